// Issue 16's fault "the user's PDS unreachable during a manifest PUT": the user's blobs are
// on the hold, then their PDS goes away (a real @atproto/pds, closed) just before the
// manifest PUT. The client gets a 503 UNAVAILABLE naming the PDS, and no tag is left
// pointing at nothing: once the PDS is back (the same data on the same port), the tag is
// unknown until the PUT is repeated, which then succeeds.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
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
  type TestAccount,
  type TestNetwork,
  type TestPds,
} from '@atcr/testkit'

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

describe('faults: the user PDS unreachable during a manifest PUT', () => {
  let dir: string
  let network: TestNetwork
  let pds: TestPds
  let pdsPort: number
  let account: TestAccount
  let hold: HoldProcess
  let appview: AppViewProcess
  let token: string
  const name = 'faults.test/app'

  before(async () => {
    dir = await makeTempDir('atcr-faults-pds-')
    network = await startNetwork()
    pdsPort = await freePort()
    pds = await network.addPds({ dataDir: `${dir}/pds`, port: pdsPort })
    account = await pds.createAccount('faults.test')
    hold = await startHoldProcess({ plcUrl: network.plc.url, ownerDid: account.did })
    appview = await startAppViewProcess({
      dataDir: `${dir}/appview`,
      plcUrl: network.plc.url,
      handleResolverUrl: pds.url,
      config: { registry: { default_hold_did: hold.did } },
    })
    const basic = Buffer.from(`faults.test:${account.appPassword}`).toString('base64')
    const service = new URL(appview.url).host
    const response = await fetch(
      `${appview.url}/auth/token?service=${service}&scope=repository:${name}:pull,push`,
      { headers: { authorization: `Basic ${basic}` } },
    )
    assert.equal(response.status, 200)
    token = ((await response.json()) as { token: string }).token
  })
  after(async () => {
    await appview?.kill()
    await hold?.close()
    await pds?.close().catch(() => {})
    await network?.close().catch(() => {})
    await removeTempDir(dir)
  })

  const call = (path: string, init: RequestInit = {}) =>
    fetch(`${appview.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    })

  async function pushBlob(bytes: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha256(bytes)
    const start = await call(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(start.status, 202, await start.clone().text())
    const location = new URL(start.headers.get('location')!, appview.url)
    location.searchParams.set('digest', digest)
    const put = await call(location.pathname + location.search, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    })
    assert.equal(put.status, 201, await put.clone().text())
    return { digest, size: bytes.length }
  }

  it('answers 503 naming the PDS, leaves no tag, and takes the same PUT once the PDS is back', async () => {
    const config = await pushBlob(Buffer.from('{"architecture":"amd64","os":"linux"}'))
    const layer = await pushBlob(Buffer.from('layer bytes of the faults test'))
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    )
    const putManifest = () =>
      call(`/v2/${name}/manifests/v1`, {
        method: 'PUT',
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
        body: manifest,
      })

    await pds.close()
    const refused = await putManifest()
    assert.equal(refused.status, 503)
    const body = (await refused.json()) as { errors: { code: string; message: string }[] }
    assert.equal(body.errors[0]?.code, 'UNAVAILABLE', JSON.stringify(body))
    assert.match(body.errors[0]!.message, /PDS/)

    pds = await network.addPds({ dataDir: `${dir}/pds`, port: pdsPort })
    const missing = await call(`/v2/${name}/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
    assert.equal(missing.status, 404, await missing.clone().text())
    assert.equal(
      ((await missing.json()) as { errors: { code: string }[] }).errors[0]?.code,
      'MANIFEST_UNKNOWN',
    )

    const accepted = await putManifest()
    assert.equal(accepted.status, 201, await accepted.clone().text())
    const pulled = await call(`/v2/${name}/manifests/v1`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
    assert.equal(pulled.status, 200)
    assert.deepEqual(Buffer.from(await pulled.arrayBuffer()), manifest)
    const tags = await call(`/v2/${name}/tags/list`)
    assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ['v1'])
  })
})
