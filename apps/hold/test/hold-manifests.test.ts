import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { NSID, statsRkey } from '@atcr/core/lexicons'
import { silentLogger } from '@atcr/core/log'
import type { TestAccount } from '@atcr/testkit'
import { StatsCounter } from '../src/stats/counter.ts'
import { digestOf, imageManifest, OCI_INDEX, pushInput, storeBlobs } from './hold-data.ts'
import { HoldFixture, type TestAppView, type TestHold } from './hold-harness.ts'
import { joinCrew, procedure, query } from './hold-xrpc.ts'

const layerA = { digest: digestOf('layer a'), size: 1000 }
const layerB = { digest: digestOf('layer b'), size: 2000 }
const config = { digest: digestOf('config'), size: 300 }
const image = imageManifest([layerA, layerB], config)
const imageDigest = digestOf('manifest 1')
const hexOf = (digest: string) => digest.slice('sha256:'.length)

describe('io.atcr.hold.notifyManifest', () => {
  let fixture: HoldFixture
  let appView: TestAppView
  let hold: TestHold
  let owner: TestAccount
  let alice: TestAccount
  let bob: TestAccount

  before(async () => {
    const started = await HoldFixture.start({
      accounts: ['skipper.test', 'alice.test', 'bob.test'],
      appView: 'did:web',
    })
    fixture = started
    ;[owner, alice, bob] = started.accounts
    appView = fixture.appView
    hold = await fixture.startHold({ allowAllCrew: true })
    await joinCrew(hold, alice)
    await storeBlobs(hold.ctx, layerA, layerB, config)
  })

  after(() => fixture?.close())

  async function layersOf(manifestUri: string) {
    const { status, body } = await query(hold, NSID.holdGetLayersForManifest, null, {
      manifest: manifestUri,
    })
    assert.equal(status, 200, JSON.stringify(body))
    return body.layers as Record<string, unknown>[]
  }

  async function allLayerRecords() {
    const res = await fetch(
      `${hold.url}/xrpc/com.atproto.repo.listRecords?repo=${encodeURIComponent(hold.did)}&collection=${NSID.holdLayer}&limit=100`,
    )
    return ((await res.json()) as { records: unknown[] }).records
  }

  async function statsOf(userDid: string, repository: string) {
    const record = await hold.ctx.repo.reader.getRecord(
      NSID.holdStats,
      statsRkey(userDid, repository),
    )
    return record?.value as Record<string, unknown> | undefined
  }

  it('a push writes one layer record per layer and one for the config, and counts the push', async () => {
    const res = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(alice.did, 'tools/app', imageDigest, image, { tag: 'latest' }),
    )
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(res.body, {
      success: true,
      operation: 'push',
      statsUpdated: true,
      layersCreated: 3,
      postCreated: false,
    })
    const manifestUri = `at://${alice.did}/io.atcr.manifest/${hexOf(imageDigest)}`
    const layers = await layersOf(manifestUri)
    assert.equal(layers.length, 3)
    const byDigest = new Map(layers.map((l) => [l.digest, l]))
    assert.deepEqual(
      [...byDigest.keys()].sort(),
      [layerA.digest, layerB.digest, config.digest].sort(),
    )
    assert.equal(byDigest.get(layerA.digest)?.size, 1000)
    assert.equal(
      byDigest.get(layerA.digest)?.mediaType,
      'application/vnd.oci.image.layer.v1.tar+gzip',
    )
    assert.equal(byDigest.get(config.digest)?.mediaType, 'application/vnd.oci.image.config.v1+json')
    for (const layer of layers) {
      assert.equal(layer.manifest, manifestUri)
      assert.equal(layer.userDid, alice.did)
      assert.equal(layer.$type, NSID.holdLayer)
    }
    const stats = await statsOf(alice.did, 'tools/app')
    assert.equal(stats?.pushCount, 1)
    assert.equal(stats?.pullCount, 0)
    assert.equal(typeof stats?.lastPush, 'string')
  })

  it('a re-push of the same manifest (a new tag) makes no commit: the push is counted in the next batch', async () => {
    const before = (await allLayerRecords()).length
    const headBefore = hold.ctx.repo.sequencer.head
    const res = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(alice.did, 'tools/app', imageDigest, image),
    )
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.layersCreated, 0)
    assert.equal((await allLayerRecords()).length, before)
    assert.equal(hold.ctx.repo.sequencer.head, headBefore)
    assert.equal((await statsOf(alice.did, 'tools/app'))?.pushCount, 1)
    assert.deepEqual(hold.ctx.counters.unwritten(alice.did, 'tools/app'), { pulls: 0, pushes: 1 })
    await hold.ctx.counters.flush()
    assert.equal(hold.ctx.repo.sequencer.head, headBefore + 1)
    assert.equal((await statsOf(alice.did, 'tools/app'))?.pushCount, 2)
  })

  it('a pull only bumps pullCount', async () => {
    const layersBefore = (await allLayerRecords()).length
    const headBefore = hold.ctx.repo.sequencer.head
    const res = await procedure(hold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'tools/app', imageDigest, image),
      operation: 'pull',
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(res.body, { success: true, operation: 'pull', statsUpdated: true })
    // No commit on the request path: the pull waits in memory for the next batch.
    assert.equal(hold.ctx.repo.sequencer.head, headBefore)
    assert.equal((await statsOf(alice.did, 'tools/app'))?.pullCount, 0)
    assert.deepEqual(hold.ctx.counters.unwritten(alice.did, 'tools/app'), { pulls: 1, pushes: 0 })
    await hold.ctx.counters.flush()
    assert.equal(hold.ctx.repo.sequencer.head, headBefore + 1)
    const stats = await statsOf(alice.did, 'tools/app')
    assert.equal(stats?.pullCount, 1)
    assert.equal(stats?.pushCount, 2)
    assert.equal(typeof stats?.lastPull, 'string')
    assert.equal((await allLayerRecords()).length, layersBefore)
  })

  it('an index writes no layer records, but counts the push', async () => {
    const indexDigest = digestOf('index 1')
    const res = await procedure(hold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'tools/app', indexDigest, {
        mediaType: OCI_INDEX,
        manifests: [
          {
            digest: imageDigest,
            size: 500,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      }),
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.layersCreated, 0)
    assert.deepEqual(await layersOf(`at://${alice.did}/io.atcr.manifest/${hexOf(indexDigest)}`), [])
    await hold.ctx.counters.flush()
    assert.equal((await statsOf(alice.did, 'tools/app'))?.pushCount, 3)
  })

  it('refuses a notification for another user (UserMismatch) and writes nothing', async () => {
    const layersBefore = (await allLayerRecords()).length
    const res = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(bob.did, 'stolen', digestOf('manifest 2'), image),
    )
    assert.equal(res.status, 403)
    assert.equal(res.body.error, 'UserMismatch')
    assert.equal((await allLayerRecords()).length, layersBefore)
    assert.equal(await statsOf(bob.did, 'stolen'), undefined)
  })

  it('refuses pushes by accounts outside the crew, anonymous calls and unknown operations', async () => {
    const push = pushInput(bob.did, 'mine', digestOf('manifest 3'), image)
    const outsider = await procedure(hold, NSID.holdNotifyManifest, bob, push)
    assert.equal(outsider.status, 403)
    assert.equal(outsider.body.error, 'Forbidden')
    const anonymous = await procedure(hold, NSID.holdNotifyManifest, null, push)
    assert.equal(anonymous.status, 401)
    const odd = await procedure(hold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'tools/app', imageDigest, image),
      operation: 'delete',
    })
    assert.equal(odd.status, 400)
    assert.equal(odd.body.error, 'InvalidOperation')
    const badDigest = await procedure(hold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'tools/app', imageDigest, image),
      manifest: { ...image, layers: [{ digest: 'sha256:nothex', size: 1, mediaType: 'x' }] },
    })
    assert.equal(badDigest.status, 400)
    const longType = await procedure(hold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'tools/app', digestOf('long type'), image),
      manifest: { ...image, layers: [{ ...layerA, mediaType: `application/${'x'.repeat(200)}` }] },
    })
    assert.equal(longType.status, 400)
    assert.equal(await statsOf(bob.did, 'mine'), undefined)
  })

  it('the trusted AppView may notify for a crew member, not for an outsider', async () => {
    const token = await appView.token(hold.did, NSID.holdNotifyManifest)
    const manifestDigest = digestOf('manifest via appview')
    const ok = await procedure(
      hold,
      NSID.holdNotifyManifest,
      token,
      pushInput(alice.did, 'via-appview', manifestDigest, imageManifest([layerA], config)),
    )
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.equal(ok.body.layersCreated, 2)
    assert.equal((await statsOf(alice.did, 'via-appview'))?.pushCount, 1)

    // Bob pulls alice's image: the AppView counts it as itself.
    const pull = await procedure(hold, NSID.holdNotifyManifest, token, {
      ...pushInput(alice.did, 'via-appview', manifestDigest, imageManifest([layerA], config)),
      operation: 'pull',
    })
    assert.equal(pull.status, 200, JSON.stringify(pull.body))
    await hold.ctx.counters.flush()
    assert.equal((await statsOf(alice.did, 'via-appview'))?.pullCount, 1)

    const outsider = await procedure(
      hold,
      NSID.holdNotifyManifest,
      await appView.token(hold.did, NSID.holdNotifyManifest),
      pushInput(bob.did, 'nope', digestOf('manifest 4'), image),
    )
    assert.equal(outsider.status, 403)
  })

  it('pulls and pushes are batched: one commit for many counts of several repositories, written by the timer', async () => {
    const counter = new StatsCounter({
      repo: hold.ctx.repo,
      logger: silentLogger(),
      intervalMs: 50,
    })
    const head = hold.ctx.repo.sequencer.head
    const committed = new Promise<number>((resolve) => {
      const stop = hold.ctx.repo.sequencer.onEvent((seq) => {
        stop()
        resolve(seq)
      })
    })
    for (let i = 0; i < 5; i++)
      counter.count(alice.did, 'batch/a', 'pull', new Date().toISOString())
    counter.count(alice.did, 'batch/a', 'push', '2026-02-01T00:00:00.000Z')
    counter.count(alice.did, 'batch/b', 'pull', '2026-01-01T00:00:00.000Z')
    assert.equal(await committed, head + 1)
    const a = await statsOf(alice.did, 'batch/a')
    assert.equal(a?.pullCount, 5)
    assert.equal(a?.pushCount, 1)
    assert.equal(a?.lastPush, '2026-02-01T00:00:00.000Z')
    const b = await statsOf(alice.did, 'batch/b')
    assert.equal(b?.pullCount, 1)
    assert.equal(b?.pushCount, 0)
    assert.equal(b?.lastPull, '2026-01-01T00:00:00.000Z')
    counter.count(alice.did, 'batch/a', 'pull', new Date().toISOString())
    // An older push time than the stored one leaves lastPush as it is.
    counter.count(alice.did, 'batch/a', 'push', '2026-01-15T00:00:00.000Z')
    await counter.close()
    const after = await statsOf(alice.did, 'batch/a')
    assert.equal(after?.pullCount, 6)
    assert.equal(after?.pushCount, 2)
    assert.equal(after?.lastPush, '2026-02-01T00:00:00.000Z')
    assert.equal(hold.ctx.repo.sequencer.head, head + 2)
  })

  it('getLayersForManifest needs no sign-in and answers an unknown manifest with no layers', async () => {
    const unknown = await layersOf(`at://${bob.did}/io.atcr.manifest/${hexOf(digestOf('none'))}`)
    assert.deepEqual(unknown, [])
    const bad = await query(hold, NSID.holdGetLayersForManifest, null, { manifest: 'not a uri' })
    assert.equal(bad.status, 400)
  })

  it('setStats sets absolute counters for crew admins and the AppView only', async () => {
    const input = { ownerDid: alice.did, repository: 'tools/app', pullCount: 40, pushCount: 7 }
    const denied = await procedure(hold, NSID.holdSetStats, alice, input)
    assert.equal(denied.status, 403)
    assert.equal((await statsOf(alice.did, 'tools/app'))?.pullCount, 1)

    const byOwner = await procedure(hold, NSID.holdSetStats, owner, input)
    assert.equal(byOwner.status, 200, JSON.stringify(byOwner.body))
    assert.deepEqual(byOwner.body, { success: true })
    let stats = await statsOf(alice.did, 'tools/app')
    assert.equal(stats?.pullCount, 40)
    assert.equal(stats?.pushCount, 7)

    const byAppView = await procedure(
      hold,
      NSID.holdSetStats,
      await appView.token(hold.did, NSID.holdSetStats),
      { ownerDid: alice.did, repository: 'migrated', pushCount: 12 },
    )
    assert.equal(byAppView.status, 200, JSON.stringify(byAppView.body))
    stats = await statsOf(alice.did, 'migrated')
    assert.equal(stats?.pushCount, 12)
    assert.equal(stats?.pullCount, 0)

    const badOwner = await procedure(hold, NSID.holdSetStats, owner, {
      ownerDid: 'alice',
      repository: 'x',
    })
    assert.equal(badOwner.status, 400)
    assert.equal(badOwner.body.error, 'InvalidOwner')
    const badRepository = await procedure(hold, NSID.holdSetStats, owner, {
      ownerDid: alice.did,
      repository: '',
    })
    assert.equal(badRepository.status, 400)
    assert.equal(badRepository.body.error, 'InvalidRepository')
  })
})
