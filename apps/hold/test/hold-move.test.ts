/**
 * Moving a did:plc hold to another host with no change on any client: two real hold
 * processes (A, then B), the real PLC directory, a real AppView process and skopeo. An
 * image pushed through the AppView to A is pulled through the same AppView, by the same
 * name, from B, after `repo export` on A, `repo import` on B (same identity key) and B's
 * start, which updates the PLC document and sends #identity. The stock @atproto/sync
 * consumer resumes on B with A's cursor: no FutureCursor.
 */
import assert from 'node:assert/strict'
import { copyFile, cp, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  freePort,
  type HoldProcess,
  hasCommand,
  makeTempDir,
  removeTempDir,
  run,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestAccount,
  type TestNetwork,
  writeOciImage,
} from '@atcr/testkit'
import { getKey, getPds, IdResolver } from '@atproto/identity'
import { type Event, Firehose } from '@atproto/sync'
import { runHoldCli } from './hold-harness.ts'

const MiB = 1024 * 1024
const missing = ['skopeo'].filter((command) => !hasCommand(command))

/** The stock consumer of a hold's firehose, from `cursor`. */
function consume(service: string, plcUrl: string, cursor: number) {
  const events: Event[] = []
  const errors: Error[] = []
  let wake = () => {}
  const firehose = new Firehose({
    service,
    // Dev/test only: the default fetch refuses http and loopback.
    idResolver: new IdResolver({ plcUrl, fetch: globalThis.fetch, timeout: 5000 }),
    getCursor: () => cursor,
    handleEvent: (evt) => {
      events.push(evt)
      cursor = evt.seq
      wake()
    },
    onError: (err) => {
      errors.push(err)
      wake()
    },
    subscriptionReconnectDelay: 100,
  })
  void firehose.start()
  return {
    events,
    errors,
    firehose,
    get cursor() {
      return cursor
    },
    async until(match: (evt: Event) => boolean, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const found = events.find(match)
        if (found) return found
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no such event; errors: ${errors}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    },
  }
}

describe('moving a did:plc hold to another host', {
  skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false,
}, () => {
  let net: TestNetwork
  let alice: TestAccount
  let root: string
  let rotationKeyPath: string
  let holdA: HoldProcess
  let holdB: HoldProcess | undefined
  let appView: AppViewProcess
  let host: string
  let onA: ReturnType<typeof consume>
  let onB: ReturnType<typeof consume> | undefined
  const skopeo = (args: string[]) => run('skopeo', args, { timeoutMs: 240_000 })
  const ref = () => `docker://${host}/${alice.did.replaceAll(':', '-')}/moving:v1`

  before(async () => {
    ;[net, root] = await Promise.all([startNetwork(), makeTempDir('atcr-move-')])
    alice = await net.pds.createAccount('mover.test')
    rotationKeyPath = join(root, 'rotation.key')
    holdA = await startHoldProcess({
      plcUrl: net.plc.url,
      ownerDid: alice.did,
      config: { identity: { did_method: 'plc', rotation_key_path: rotationKeyPath } },
    })
    onA = consume(`ws://localhost:${holdA.port}`, net.plc.url, 0)
    appView = await startAppViewProcess({
      dataDir: join(root, 'appview'),
      plcUrl: net.plc.url,
      handleResolverUrl: net.pds.url,
      config: {
        registry: { default_hold_did: holdA.did },
        // The AppView follows the moved hold once it resolves the DID again.
        identity: { cache_ttl: '1s' },
      },
    })
    host = `127.0.0.1:${appView.port}`
  })
  after(async () => {
    await onA?.firehose.destroy()
    await onB?.firehose.destroy()
    await appView?.kill('SIGKILL')
    await holdA?.close()
    await holdB?.close()
    await net?.close()
    if (root) await removeTempDir(root)
  })

  it('an image pushed to A pulls through the AppView from B, with no change on the client or in records', async () => {
    assert.ok(holdA.did.startsWith('did:plc:'))
    const layout = join(root, 'layout')
    const image = await writeOciImage(layout, {
      tag: 'v1',
      layers: [
        { files: [{ path: 'etc/motd', content: 'moved\n' }] },
        { randomBytes: 3 * MiB, seed: 'move-3' },
      ],
    })
    await skopeo([
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${alice.did}:${alice.appPassword}`,
      `oci:${layout}:v1`,
      ref(),
    ])
    const recordsBefore = await userRecords(alice)
    assert.ok(recordsBefore.length > 0)

    // A's firehose up to the push: the cursor a relay would have saved.
    await onA.until((evt) => evt.event === 'create' && evt.collection === 'io.atcr.hold.layer')
    const savedCursor = onA.cursor

    // On A: export the repo, copy the identity key and the blobs (a shared bucket would
    // need no copy), then A goes away for good.
    const car = await runHoldCli(['repo', 'export', '--config', join(holdA.dataDir, 'hold.yaml')])
    assert.equal(car.code, 0, car.stderr)
    const dirB = join(root, 'hold-b')
    const portB = await freePort()
    await cp(join(holdA.dataDir, 'blobs'), join(dirB, 'blobs'), { recursive: true })
    await copyFile(join(holdA.dataDir, 'signing.key'), join(dirB, 'signing.key'))
    const carFile = join(root, 'hold-a.car')
    await writeFile(carFile, car.stdout)
    await onA.firehose.destroy()
    await holdA.close()

    // On B: import with B's config (the same DID, rotation key and identity key).
    const identity = {
      did_method: 'plc',
      did: holdA.did,
      rotation_key_path: rotationKeyPath,
      plc_directory_url: net.plc.url,
    }
    const imported = await runHoldCli(['repo', 'import', carFile], {
      ATCR_HOLD_SERVER_DATA_DIR: dirB,
      ATCR_HOLD_SERVER_PUBLIC_URL: `http://localhost:${portB}`,
      ATCR_HOLD_SERVER_MODE: 'dev',
      ATCR_HOLD_REGISTRATION_OWNER_DID: alice.did,
      ATCR_HOLD_IDENTITY_DID_METHOD: identity.did_method,
      ATCR_HOLD_IDENTITY_DID: identity.did,
      ATCR_HOLD_IDENTITY_ROTATION_KEY_PATH: identity.rotation_key_path,
      ATCR_HOLD_IDENTITY_PLC_DIRECTORY_URL: identity.plc_directory_url,
    })
    assert.equal(imported.code, 0, imported.stderr)
    assert.match(imported.stderr, /signature verified \(key from this hold\)/)

    // B starts: it brings the PLC document to its URL and announces the new identity.
    holdB = await startHoldProcess({
      plcUrl: net.plc.url,
      ownerDid: alice.did,
      dataDir: dirB,
      port: portB,
      config: { identity },
    })
    assert.equal(holdB.did, holdA.did)
    const resolver = new IdResolver({ plcUrl: net.plc.url, fetch: globalThis.fetch })
    const document = await resolver.did.ensureResolve(holdB.did, true)
    assert.equal(getPds(document), holdB.url)
    assert.deepEqual(document.alsoKnownAs ?? [], [], 'localhost gives no handle')

    // A relay resuming on B with the cursor A gave it: no FutureCursor, and #identity.
    onB = consume(`ws://localhost:${holdB.port}`, net.plc.url, savedCursor)
    const announced = await onB.until((evt) => evt.event === 'identity')
    assert.equal(announced.did, holdB.did)
    assert.ok(announced.seq > savedCursor)
    assert.ok(announced.event === 'identity' && announced.didDocument)
    assert.equal(getPds(announced.didDocument), holdB.url)
    assert.equal(getKey(announced.didDocument), getKey(document))
    assert.deepEqual(
      onB.errors.map((e) => e.message),
      [],
    )

    // The same client, the same name, the same AppView: the image comes from B.
    const back = join(root, 'back')
    await skopeo(['copy', '--src-tls-verify=false', ref(), `oci:${back}:v1`])
    assert.deepEqual(
      (await readdir(join(back, 'blobs', 'sha256'))).sort(),
      (await readdir(join(layout, 'blobs', 'sha256'))).sort(),
    )
    const inspect = JSON.parse((await skopeo(['inspect', '--tls-verify=false', ref()])).stdout)
    assert.equal(inspect.Digest, image.manifest.digest)
    assert.deepEqual(await userRecords(alice), recordsBefore, "no user's records changed")
  })
})

/** The user's ATCR records (manifests and tags), as their PDS lists them. */
async function userRecords(account: TestAccount) {
  const all: { uri: string; cid: string }[] = []
  for (const collection of ['io.atcr.manifest', 'io.atcr.tag']) {
    const { data } = await account.agent.com.atproto.repo.listRecords({
      repo: account.did,
      collection,
      limit: 100,
    })
    all.push(...data.records.map(({ uri, cid }) => ({ uri, cid })))
  }
  return all
}
