// Faults of issue 16 around the AppView, on one stack where each part can fail on its own:
// a real PLC, the user's own PDS (a real @atproto/pds on a fixed port and data dir, so it
// can be closed and started again), a hold process (the same), PostgreSQL (crashed and
// restarted), and the AppView executable on that database. The AppView is never restarted:
// it must ride out each fault with clear errors and carry on once the part is back.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  freePort,
  type HoldProcess,
  makeTempDir,
  removeTempDir,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  startPostgres,
  type TestAccount,
  type TestNetwork,
  type TestPds,
  type TestPostgres,
} from '@atcr/testkit'
import { Pusher, sha256 } from './registry-client.ts'

const MiB = 1024 * 1024
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json'

describe('faults: the PDS, the hold and PostgreSQL failing under a running AppView', () => {
  let dir: string
  let network: TestNetwork
  let pds: TestPds
  let pdsPort: number
  let account: TestAccount
  let hold: HoldProcess
  let holdPort: number
  let postgres: TestPostgres
  let appview: AppViewProcess
  let token: string
  let pusher: Pusher
  const name = 'faults.test/app'

  const startUserPds = () => network.addPds({ dataDir: `${dir}/pds`, port: pdsPort })
  const startHold = () =>
    startHoldProcess({
      plcUrl: network.plc.url,
      ownerDid: account.did,
      dataDir: `${dir}/hold`,
      port: holdPort,
    })

  before(async () => {
    dir = await makeTempDir('atcr-faults-')
    await mkdir(`${dir}/hold`)
    ;[network, postgres, pdsPort, holdPort] = await Promise.all([
      startNetwork(),
      startPostgres(),
      freePort(),
      freePort(),
    ])
    pds = await startUserPds()
    account = await pds.createAccount('faults.test')
    hold = await startHold()
    appview = await startAppViewProcess({
      dataDir: `${dir}/appview`,
      plcUrl: network.plc.url,
      handleResolverUrl: pds.url,
      config: {
        database: { url: await postgres.createDatabase('faults') },
        // Health checks off: a hold killed on purpose must not be refused for being down.
        registry: {
          default_hold_did: hold.did,
          upload_part_size: 5 * MiB,
          hold_health_interval: 0,
        },
      },
    })
    const basic = Buffer.from(`faults.test:${account.appPassword}`).toString('base64')
    const service = new URL(appview.url).host
    const response = await fetch(
      `${appview.url}/auth/token?service=${service}&scope=repository:${name}:pull,push`,
      { headers: { authorization: `Basic ${basic}` } },
    )
    assert.equal(response.status, 200)
    token = ((await response.json()) as { token: string }).token
    pusher = new Pusher({ url: appview.url, token: async () => token }, account, name)
  })
  after(async () => {
    await appview?.kill()
    await hold?.close()
    await pds?.close().catch(() => {})
    await network?.close().catch(() => {})
    await postgres?.close()
    await removeTempDir(dir)
  })

  const call = (path: string, init: RequestInit = {}) =>
    fetch(new URL(path, appview.url), {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    })

  const getManifest = () => call(`/v2/${name}/manifests/v1`, { headers: { accept: MANIFEST_TYPE } })

  it('the hold SIGKILLed between the parts of an upload: the session goes on after its restart', async () => {
    const bytes = randomBytes(12 * MiB)
    const digest = sha256(bytes)
    const first = bytes.subarray(0, 6 * MiB)

    const start = await call(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(start.status, 202, await start.clone().text())
    let location = start.headers.get('location')!
    const patch = async (chunk: Uint8Array, offset: number) => {
      const response = await call(location, {
        method: 'PATCH',
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${offset}-${offset + chunk.length - 1}`,
        },
        body: chunk,
      })
      assert.equal(response.status, 202, await response.clone().text())
      location = response.headers.get('location')!
    }
    // 6 MiB: the first 5 MiB part goes to the hold, 1 MiB waits in the AppView.
    await patch(first, 0)

    hold.child.kill('SIGKILL')
    if (hold.child.exitCode === null && hold.child.signalCode === null) {
      await once(hold.child, 'exit')
    }
    hold = await startHold()

    const resumed = await call(location)
    assert.equal(resumed.status, 204, await resumed.clone().text())
    assert.equal(resumed.headers.get('range'), `0-${first.length - 1}`)
    await patch(bytes.subarray(first.length), first.length)
    const url = new URL(location, appview.url)
    url.searchParams.set('digest', digest)
    const done = await call(url.pathname + url.search, { method: 'PUT' })
    assert.equal(done.status, 201, await done.clone().text())

    const read = await call(`/v2/${name}/blobs/${digest}`)
    assert.equal(read.status, 200)
    assert.ok(Buffer.from(await read.arrayBuffer()).equals(bytes), 'the blob read back whole')
  })

  it("the user's PDS unreachable during a manifest PUT: 503 naming it, no tag left, the same PUT later succeeds", async () => {
    const config = await pusher.blob(Buffer.from('{"architecture":"amd64","os":"linux"}'))
    const layer = await pusher.blob(Buffer.from('layer bytes of the faults test'))
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    )
    const putManifest = () =>
      call(`/v2/${name}/manifests/v1`, {
        method: 'PUT',
        headers: { 'content-type': MANIFEST_TYPE },
        body: manifest,
      })

    await pds.close()
    const refused = await putManifest()
    assert.equal(refused.status, 503)
    const body = (await refused.json()) as { errors: { code: string; message: string }[] }
    assert.equal(body.errors[0]?.code, 'UNAVAILABLE', JSON.stringify(body))
    assert.match(body.errors[0]!.message, /PDS/)

    pds = await startUserPds()
    const missing = await getManifest()
    assert.equal(missing.status, 404, await missing.clone().text())
    assert.equal(
      ((await missing.json()) as { errors: { code: string }[] }).errors[0]?.code,
      'MANIFEST_UNKNOWN',
    )

    const accepted = await putManifest()
    assert.equal(accepted.status, 201, await accepted.clone().text())
    const pulled = await getManifest()
    assert.equal(pulled.status, 200)
    assert.deepEqual(Buffer.from(await pulled.arrayBuffer()), manifest)
    const tags = await call(`/v2/${name}/tags/list`)
    assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ['v1'])
  })

  it('PostgreSQL crashed and restarted: requests meanwhile fail cleanly, then all works again without an AppView restart', async () => {
    assert.equal((await getManifest()).status, 200)
    await postgres.crash()
    const during = [
      await getManifest(),
      await call(`/v2/${name}/tags/list`),
      await call(`/v2/${name}/blobs/uploads/`, { method: 'POST' }),
    ]
    for (const response of during) {
      const text = await response.text()
      assert.ok(response.status < 500 || response.status === 503, `${response.status} ${text}`)
      if (response.status >= 400) {
        const { errors } = JSON.parse(text) as { errors: { code: string; message: string }[] }
        assert.ok(errors[0]?.code, text)
        assert.doesNotMatch(errors[0]!.message, /\n\s+at /, 'no stack trace')
      }
    }

    // An upload session is a database row: that request at least met the fault.
    assert.equal(during[2]!.status, 503)

    await postgres.restart()
    const deadline = Date.now() + 30_000
    let status = 0
    while (Date.now() < deadline) {
      status = (await getManifest()).status
      if (status === 200) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.equal(status, 200, 'the manifest is served again once PostgreSQL is back')
    await pusher.blob(Buffer.from('a blob pushed after the database came back'))
  })
})
