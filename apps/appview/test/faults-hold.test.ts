// Issue 16's fault "the hold killed mid-upload and restarted between parts": a chunked
// upload through the AppView sends its first part to the hold, the hold process is
// SIGKILLed (no chance to clean up) and started again on the same data and port, and the
// same upload session goes on: the next chunk, the final PUT, and the blob read back whole.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
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
  type TestAccount,
  type TestNetwork,
} from '@atcr/testkit'

const MiB = 1024 * 1024

describe('faults: the hold SIGKILLed between the parts of an upload', () => {
  let dir: string
  let network: TestNetwork
  let account: TestAccount
  let hold: HoldProcess
  let holdPort: number
  let appview: AppViewProcess
  let token: string
  const name = 'killed.test/app'

  const startHold = () =>
    startHoldProcess({
      plcUrl: network.plc.url,
      ownerDid: account.did,
      dataDir: `${dir}/hold`,
      port: holdPort,
    })

  before(async () => {
    dir = await makeTempDir('atcr-faults-hold-')
    network = await startNetwork()
    account = await network.pds.createAccount('killed.test')
    holdPort = await freePort()
    await mkdir(`${dir}/hold`)
    hold = await startHold()
    appview = await startAppViewProcess({
      dataDir: `${dir}/appview`,
      plcUrl: network.plc.url,
      handleResolverUrl: network.pds.url,
      // Health checks off: this test is about the upload, not about refusing a down hold.
      config: {
        registry: {
          default_hold_did: hold.did,
          upload_part_size: 5 * MiB,
          hold_health_interval: 0,
        },
      },
    })
    const basic = Buffer.from(`killed.test:${account.appPassword}`).toString('base64')
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
    await network?.close()
    await removeTempDir(dir)
  })

  const call = (path: string, init: RequestInit = {}) =>
    fetch(new URL(path, appview.url), {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...init.headers },
    })

  it('the session goes on after the restart and the blob is whole', async () => {
    const bytes = randomBytes(12 * MiB)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const first = bytes.subarray(0, 6 * MiB)
    const second = bytes.subarray(6 * MiB)

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
      return response
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
    await patch(second, first.length)
    const url = new URL(location, appview.url)
    url.searchParams.set('digest', digest)
    const done = await call(url.pathname + url.search, { method: 'PUT' })
    assert.equal(done.status, 201, await done.clone().text())

    const read = await call(`/v2/${name}/blobs/${digest}`)
    assert.equal(read.status, 200)
    const back = Buffer.from(await read.arrayBuffer())
    assert.equal(back.length, bytes.length)
    assert.ok(back.equals(bytes), 'the blob read back is the one uploaded')
  })
})
