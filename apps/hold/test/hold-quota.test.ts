import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import { silentLogger } from '@atcr/core/log'
import type { TestAccount } from '@atcr/testkit'
import { Hold } from '../src/index.ts'
import { QuotaConfigError } from '../src/quota/index.ts'
import { digestOf, imageManifest, MiB, pushInput, putBlob, storeBlobs } from './hold-data.ts'
import { HoldFixture, type TestAppView, type TestHold, testHoldConfig } from './hold-harness.ts'
import { joinCrew, procedure, query } from './hold-xrpc.ts'

const DECKHAND = { name: 'deckhand', limit: 1000, description: 'Small crew' }
const TIERS = [
  DECKHAND,
  { name: 'bosun', limit: 5000, description: '' },
  { name: 'quartermaster', limit: null, description: 'No limit' },
]

const blob = (name: string, size: number) => ({ digest: digestOf(name), size })

describe('quotas and tiers', () => {
  let fixture: HoldFixture
  let appView: TestAppView
  let hold: TestHold
  let owner: TestAccount
  let alice: TestAccount
  let bob: TestAccount

  before(async () => {
    const started = await HoldFixture.start({
      accounts: ['quota-captain.test', 'alice.test', 'bob.test'],
      appView: 'did:web',
    })
    fixture = started
    ;[owner, alice, bob] = started.accounts
    appView = fixture.appView
    hold = await fixture.startHold({ allowAllCrew: true, tiers: TIERS })
    await joinCrew(hold, alice, bob)
  })

  after(() => fixture?.close())

  /** Stores the layers (at their declared size) and pushes a manifest of them. */
  async function push(account: TestAccount, name: string, layers: ReturnType<typeof blob>[]) {
    await storeBlobs(hold.ctx, ...layers, blob('cfg', 0))
    return pushDeclared(account, name, layers)
  }

  /** Pushes a manifest declaring the layers as given, whatever the hold stores. */
  const pushDeclared = (account: TestAccount, name: string, layers: ReturnType<typeof blob>[]) =>
    procedure(
      hold,
      NSID.holdNotifyManifest,
      account,
      pushInput(account.did, 'app', digestOf(name), imageManifest(layers, blob('cfg', 0))),
    )

  async function quotaOf(caller: TestAccount | { token: string }, userDid: string) {
    return query(hold, NSID.holdGetQuota, caller, { userDid })
  }

  async function layerCount() {
    const page = await hold.ctx.repo.reader.listRecords({
      collection: NSID.holdLayer,
      limit: 100,
    })
    return page.length
  }

  it('listTiers shows the configured tiers in rank order, publicly', async () => {
    const { status, body } = await query(hold, NSID.holdListTiers, null)
    assert.equal(status, 200)
    assert.deepEqual(body.tiers, [
      { name: 'deckhand', rank: 0, default: true, description: 'Small crew', limit: 1000 },
      { name: 'bosun', rank: 1, default: false, limit: 5000 },
      { name: 'quartermaster', rank: 2, default: false, description: 'No limit' },
    ])
  })

  it('new crew members get the default tier', async () => {
    const { body } = await quotaOf(alice, alice.did)
    assert.deepEqual(body, {
      userDid: alice.did,
      uniqueBlobs: 0,
      totalSize: 0,
      tier: 'deckhand',
      limit: 1000,
    })
  })

  it('getQuota counts each digest once across manifests', async () => {
    assert.equal((await push(alice, 'm1', [blob('shared', 600)])).status, 200)
    assert.equal((await push(alice, 'm2', [blob('shared', 600), blob('own', 300)])).status, 200)
    const { status, body } = await quotaOf(alice, alice.did)
    assert.equal(status, 200, JSON.stringify(body))
    // shared (600) + own (300) + the empty config, each once.
    assert.equal(body.uniqueBlobs, 3)
    assert.equal(body.totalSize, 900)
  })

  it('metrics show the accounts of each tier, their bytes and who reached the limit', async () => {
    const text = await hold.ctx.metrics.registry.metrics()
    const value = (name: string, tier: string) =>
      Number(new RegExp(`^${name}\\{tier="${tier}"\\} (\\S+)$`, 'm').exec(text)?.[1])
    // Alice (900 bytes) and Bob (none) are deckhands; the owner is left out.
    assert.equal(value('atcr_hold_quota_users', 'deckhand'), 2)
    assert.equal(value('atcr_hold_quota_used_bytes', 'deckhand'), 900)
    assert.equal(value('atcr_hold_quota_limit_reached_users', 'deckhand'), 0)
    assert.equal(value('atcr_hold_quota_users', 'bosun'), 0)
    // The hold stores what the layer records name, each digest once (the empty config too).
    assert.match(text, /^atcr_hold_stored_blobs 3$/m)
  })

  it('a push past the limit fails with QuotaExceeded and writes nothing', async () => {
    const layersBefore = await layerCount()
    const statsBefore = await hold.ctx.repo.reader.listRecords({
      collection: NSID.holdStats,
      limit: 100,
    })
    const res = await push(alice, 'm3', [blob('shared', 600), blob('too much', 200)])
    assert.equal(res.status, 403, JSON.stringify(res.body))
    assert.equal(res.body.error, 'QuotaExceeded')
    assert.match(String(res.body.message), /deckhand/)
    assert.equal(await layerCount(), layersBefore)
    const statsAfter = await hold.ctx.repo.reader.listRecords({
      collection: NSID.holdStats,
      limit: 100,
    })
    assert.deepEqual(statsAfter, statsBefore)
    const { body } = await quotaOf(alice, alice.did)
    assert.equal(body.totalSize, 900)
  })

  it('the quota counts the stored size, not the size a manifest declares', async () => {
    // 3 MiB stored, declared as 1 byte: refused against the 1000-byte tier.
    const liar = blob('declared small', 1)
    await putBlob(hold.ctx, liar.digest, new Uint8Array(3 * MiB))
    const res = await pushDeclared(bob, 'liar', [liar])
    assert.equal(res.status, 403, JSON.stringify(res.body))
    assert.equal(res.body.error, 'QuotaExceeded')
    assert.match(String(res.body.message), new RegExp(`${3 * MiB} new`))
    // Declared larger than stored: counted (and recorded) at the stored size.
    const honest = blob('declared large', 900)
    await putBlob(hold.ctx, honest.digest, new Uint8Array(40))
    const ok = await pushDeclared(bob, 'honest', [honest])
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.equal((await quotaOf(bob, bob.did)).body.totalSize, 40)
    const records = await hold.ctx.repo.reader.listRecords({
      collection: NSID.holdLayer,
      limit: 100,
    })
    const recorded = records.find((r) => r.value.digest === honest.digest)
    assert.equal(recorded?.value.size, 40)
  })

  it('a push naming a blob the hold does not store fails with BlobNotFound', async () => {
    const missing = blob('never uploaded', 10)
    const res = await pushDeclared(bob, 'missing', [missing])
    assert.equal(res.status, 400, JSON.stringify(res.body))
    assert.equal(res.body.error, 'BlobNotFound')
    assert.match(String(res.body.message), new RegExp(missing.digest))
  })

  it('a push of blobs the user already stores passes even at the limit', async () => {
    const res = await push(alice, 'm4', [blob('shared', 600), blob('own', 300)])
    assert.equal(res.status, 200, JSON.stringify(res.body))
  })

  it('only the trusted AppView may change a tier', async () => {
    for (const caller of [alice, owner]) {
      const res = await procedure(hold, NSID.holdUpdateCrewTier, caller, {
        userDid: alice.did,
        tierRank: 2,
      })
      assert.equal(res.status, 403)
      assert.equal(res.body.error, 'AuthRequired')
    }
    const anonymous = await procedure(hold, NSID.holdUpdateCrewTier, null, {
      userDid: alice.did,
      tierRank: 2,
    })
    assert.equal(anonymous.status, 401)
    assert.equal((await quotaOf(alice, alice.did)).body.tier, 'deckhand')
  })

  it('updateCrewTier by the trusted AppView raises the limit', async () => {
    const token = await appView.token(hold.did, NSID.holdUpdateCrewTier)
    const res = await procedure(hold, NSID.holdUpdateCrewTier, token, {
      userDid: alice.did,
      tierRank: 1,
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(res.body, { tierName: 'bosun' })
    const { body } = await quotaOf(alice, alice.did)
    assert.equal(body.tier, 'bosun')
    assert.equal(body.limit, 5000)
    const crew = await hold.ctx.repo.reader.listRecords({
      collection: NSID.holdCrew,
      limit: 100,
    })
    assert.equal(crew.find((r) => r.value.member === alice.did)?.value.tier, 'bosun')
    // The push refused before now fits.
    const retry = await push(alice, 'm3', [blob('shared', 600), blob('too much', 200)])
    assert.equal(retry.status, 200, JSON.stringify(retry.body))
    // The metrics follow her to her new tier: 1100 bytes among bosuns, Bob's 40 stay.
    const text = await hold.ctx.metrics.registry.metrics()
    assert.match(text, /^atcr_hold_quota_users\{tier="bosun"\} 1$/m)
    assert.match(text, /^atcr_hold_quota_used_bytes\{tier="bosun"\} 1100$/m)
    assert.match(text, /^atcr_hold_quota_used_bytes\{tier="deckhand"\} 40$/m)
  })

  it('updateCrewTier refuses an unknown rank and a user outside the crew', async () => {
    const badRank = await procedure(
      hold,
      NSID.holdUpdateCrewTier,
      await appView.token(hold.did, NSID.holdUpdateCrewTier),
      { userDid: alice.did, tierRank: 3 },
    )
    assert.equal(badRank.status, 400)
    assert.equal(badRank.body.error, 'InvalidRequest')
    const stranger = await procedure(
      hold,
      NSID.holdUpdateCrewTier,
      await appView.token(hold.did, NSID.holdUpdateCrewTier),
      { userDid: 'did:plc:nobodynobodynobodynobody', tierRank: 0 },
    )
    assert.equal(stranger.status, 404)
    assert.equal(stranger.body.error, 'UserNotFound')
  })

  it('the owner is unlimited', async () => {
    const res = await push(owner, 'big', [blob('huge', 1_000_000)])
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const { body } = await quotaOf(owner, owner.did)
    assert.equal(body.totalSize, 1_000_000)
    assert.equal(body.limit, undefined)
    assert.equal(body.tier, undefined)
  })

  it('getQuota answers the user, crew admins and the AppView, nobody else', async () => {
    const byBob = await quotaOf(bob, alice.did)
    assert.equal(byBob.status, 403)
    const byOwner = await quotaOf(owner, alice.did)
    assert.equal(byOwner.status, 200)
    assert.equal(byOwner.body.tier, 'bosun')
    const byAppView = await quotaOf(await appView.token(hold.did, NSID.holdGetQuota), alice.did)
    assert.equal(byAppView.status, 200)
    assert.equal(byAppView.body.totalSize, 1100)
    const anonymous = await query(hold, NSID.holdGetQuota, null, { userDid: alice.did })
    assert.equal(anonymous.status, 401)
    const bad = await quotaOf(alice, 'not-a-did')
    assert.equal(bad.status, 400)
    assert.equal(bad.body.error, 'InvalidUserDid')
  })
})

describe('quotas without tiers, and tier settings', () => {
  let fixture: HoldFixture
  let hold: TestHold
  let alice: TestAccount

  before(async () => {
    const started = await HoldFixture.start({ accounts: ['plain-captain.test', 'alice.test'] })
    fixture = started
    ;[, alice] = started.accounts
    hold = await fixture.startHold({ allowAllCrew: true })
    await storeBlobs(hold.ctx, blob('l', MiB), blob('c', 2))
  })

  after(() => fixture?.close())

  it('a hold without tiers limits nobody and lists no tiers', async () => {
    assert.equal((await procedure(hold, NSID.holdRequestCrew, alice)).status, 200)
    const res = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(alice.did, 'app', digestOf('m'), imageManifest([blob('l', MiB)], blob('c', 2))),
    )
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const quota = await query(hold, NSID.holdGetQuota, alice, { userDid: alice.did })
    assert.deepEqual(quota.body, { userDid: alice.did, uniqueBlobs: 2, totalSize: MiB + 2 })
    assert.deepEqual((await query(hold, NSID.holdListTiers, null)).body, { tiers: [] })
  })

  it('a hold with duplicate tier names or an unlisted default tier does not start', async () => {
    for (const quota of [
      { tiers: [DECKHAND, DECKHAND] },
      { tiers: TIERS, default_tier: 'admiral' },
    ]) {
      const config = await testHoldConfig({
        plcUrl: fixture.net.plc.url,
        ownerDid: fixture.ownerDid,
        dataDir: await fixture.tempDir(),
        overrides: { quota },
      })
      await assert.rejects(Hold.create(config, { logger: silentLogger() }), QuotaConfigError)
    }
  })
})
