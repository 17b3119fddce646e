// The AppView's store modules on both database engines: SQLite (a file in a temp dir) and
// PostgreSQL (a throwaway cluster on loopback, one per file, a fresh database per test).
// The same assertions run on each, so SQLite-only SQL, bigint columns read back as strings,
// upsert syntax, byte columns, collation and the upload cap's atomicity show up here.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { databaseLock, isUniqueViolation } from '@atcr/core/database'
import { OAuthStore, WebSessions } from '@atcr/core/oauth'
import { pino } from 'pino'
import { DeviceFlow } from '../src/auth/devices.ts'
import { SessionStore, type StoredSession } from '../src/auth/session-store.ts'
import type { AppViewDatabase } from '../src/db/index.ts'
import { BlobAliases } from '../src/holds/blob-aliases.ts'
import { HoldHealth } from '../src/holds/hold-health.ts'
import { ContentLinks } from '../src/registry/content-links.ts'
import { type UploadRow, UploadStore } from '../src/registry/upload-store.ts'
import { testEngines } from './engines.ts'

const DID = 'did:plc:alice'
const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`
const D3 = `sha256:${'3'.repeat(64)}`

// Enough PostgreSQL connections for statements to really run at once (the upload cap test).
const { engines, close } = testEngines({ maxConnections: 20 })
after(() => close())

function uploadRow(overrides: Partial<UploadRow> = {}): UploadRow {
  const now = 1_750_000_000_000
  return {
    id: randomUUID(),
    name: 'did-plc-alice/app',
    caller_did: DID,
    hold_did: 'did:web:hold.test',
    hold_endpoint: 'http://127.0.0.1:1',
    hold_upload_id: null,
    expected_digest: null,
    received: 0,
    sent: 0,
    lease_owner: null,
    lease_until: 0,
    created_at: now,
    updated_at: now,
    ...overrides,
  }
}

for (const engine of engines) {
  describe(`AppView database on ${engine.name}`, {
    skip: engine.skip,
  }, () => {
    let db: AppViewDatabase
    let reopen: () => Promise<AppViewDatabase>

    before(async () => {
      ;({ db, reopen } = await engine.open())
    })
    after(() => db.close())

    it('migrates once: opening again finds nothing to do and keeps the rows', async () => {
      assert.equal(db.engine, engine.name)
      await new ContentLinks(db).linkManifest('did:plc:kept', 'kept', {
        digest: D1,
        recordDigest: D1,
        subject: null,
      })
      // Two opens at once, as instances starting together (PostgreSQL: the migration lock).
      const [again, third] = await Promise.all([reopen(), reopen()])
      try {
        assert.equal(
          (await new ContentLinks(again).manifest('did:plc:kept', 'kept', D1)).state,
          'linked',
        )
      } finally {
        await again.close()
        await third.close()
      }
    })

    it('content links: manifests, referrers, deletes remembered, blobs keep their hold', async () => {
      const links = new ContentLinks(db)
      assert.equal((await links.manifest(DID, 'app', D1)).state, 'unknown')
      await links.linkManifest(DID, 'app', { digest: D1, recordDigest: D1, subject: null })
      await links.linkManifest(DID, 'app', { digest: D2, recordDigest: D3, subject: D1 })
      await links.linkManifest(DID, 'other', { digest: D1, recordDigest: D1, subject: null })
      assert.deepEqual(await links.manifest(DID, 'app', D2), { state: 'linked', recordDigest: D3 })
      assert.deepEqual(await links.referrers(DID, 'app', D1), [D2])
      assert.deepEqual((await links.repositoriesHolding(DID, D1)).sort(), ['app', 'other'])
      await links.unlinkManifest(DID, 'app', D1)
      await links.unlinkManifest(DID, 'app', D3) // never linked: remembered as deleted
      assert.equal((await links.manifest(DID, 'app', D1)).state, 'unlinked')
      assert.deepEqual([...(await links.unlinkedManifests(DID, 'app'))].sort(), [D1, D3])
      assert.equal(await links.holdsManifests(DID, 'app'), true)
      await links.unlinkManifest(DID, 'app', D2)
      assert.equal(await links.holdsManifests(DID, 'app'), false)

      await links.linkBlobs(DID, 'app', [D1, D2], 'did:web:hold-a.test')
      // Linked again without a hold: the known hold stays.
      await links.linkBlobs(DID, 'app', [D1], null)
      assert.deepEqual(await links.blob(DID, 'app', D1), {
        state: 'linked',
        holdDid: 'did:web:hold-a.test',
      })
      await links.unlinkBlob(DID, 'app', D2)
      assert.equal((await links.blob(DID, 'app', D2)).state, 'unlinked')
      assert.equal((await links.blob(DID, 'app', D3)).state, 'unknown')
    })

    it('catalog: names in code point order, paginated after `last`, a taken name falls back', async () => {
      const links = new ContentLinks(db)
      // Upper case sorts before lower case by code point (a locale collation would not).
      for (const [did, repo] of [
        ['did:plc:b', 'zeta'],
        ['did:plc:b', 'Alpha'],
        ['did:plc:c', 'alpha'],
        ['did:plc:c', 'empty'],
      ] as const) {
        await links.rememberRepository(did, repo, [`h/${repo}`, `${did}/${repo}`])
        if (repo !== 'empty') {
          await links.linkManifest(did, repo, { digest: D1, recordDigest: D1, subject: null })
        }
      }
      // h/alpha is free; h/zeta is taken by did:plc:b, so did:plc:d gets its DID name.
      await links.rememberRepository('did:plc:d', 'zeta', ['h/zeta', 'did:plc:d/zeta'])
      await links.linkManifest('did:plc:d', 'zeta', { digest: D1, recordDigest: D1, subject: null })
      const all = await links.catalog(undefined, undefined)
      assert.deepEqual(
        all.filter((n) => n.startsWith('h/') || n.startsWith('did:plc:d')),
        ['did:plc:d/zeta', 'h/Alpha', 'h/alpha', 'h/zeta'],
      )
      assert.deepEqual(await links.catalog('h/Alpha', 1), ['h/alpha'])
      await assert.rejects(links.rememberRepository('did:plc:e', 'zeta', ['h/zeta']), (error) =>
        isUniqueViolation(error),
      )
    })

    it('upload sessions: numbers read back as numbers, leases, parts upserted in order', async () => {
      const store = new UploadStore(db)
      const now = Date.now()
      const row = uploadRow({ created_at: now, updated_at: now, caller_did: 'did:plc:lease' })
      assert.equal(await store.insert(row, 10, now - 60_000), true)
      const stored = await store.get(row.id)
      assert.deepEqual(stored, row)
      assert.equal(typeof stored?.created_at, 'number')

      const leased = await store.lease(row.id, 'one', now, now + 30_000, now - 60_000)
      assert.equal(leased.state, 'leased')
      const second = await store.lease(row.id, 'two', now, now + 30_000, now - 60_000)
      assert.equal(second.state, 'busy')
      assert.equal(await store.renew(row.id, 'one', now + 1, now + 40_000), true)
      assert.equal(await store.renew(row.id, 'two', now + 1, now + 40_000), false)
      const big = 5 * 1024 ** 4 // past 32 bits
      assert.equal(await store.record(row.id, 'one', { received: big, hold_upload_id: 'u1' }), true)
      assert.equal(
        await store.addPart(
          row.id,
          'one',
          { part_number: 2, etag: 'b', size: big },
          {
            received: big,
            sent: big,
          },
        ),
        true,
      )
      await store.addPart(
        row.id,
        'one',
        { part_number: 1, etag: 'a', size: 5 },
        {
          received: big,
          sent: big,
        },
      )
      // The same part again (a retried PUT): replaced.
      await store.addPart(
        row.id,
        'one',
        { part_number: 1, etag: 'a2', size: 6 },
        {
          received: big,
          sent: big,
        },
      )
      assert.equal(
        await store.addPart(
          row.id,
          'two',
          { part_number: 3, etag: 'c', size: 1 },
          {
            received: 0,
            sent: 0,
          },
        ),
        false,
      )
      assert.deepEqual(await store.parts(row.id), [
        { part_number: 1, etag: 'a2', size: 6 },
        { part_number: 2, etag: 'b', size: big },
      ])
      const after = await store.get(row.id)
      assert.equal(after?.received, big)
      assert.equal(after?.hold_upload_id, 'u1')

      await store.release(row.id, 'one', now + 2)
      assert.equal((await store.get(row.id))?.lease_owner, null)
      // Idle: not leased again, but claimed by the sweeper, once.
      const later = now + 120_000
      assert.equal(
        (await store.lease(row.id, 'x', later, later + 1, later - 60_000)).state,
        'expired',
      )
      assert.deepEqual(await store.idle(later - 60_000, later, 10), [row.id])
      assert.equal(
        (await store.claimIdle(row.id, 'sweep', later, later + 1, later - 60_000))?.id,
        row.id,
      )
      assert.equal(await store.claimIdle(row.id, 'sweep2', later, later + 1, later - 60_000), null)
      assert.deepEqual(await store.existing([row.id, randomUUID()]), new Set([row.id]))
      await store.delete(row.id)
      assert.equal(await store.get(row.id), null)
      assert.deepEqual(await store.parts(row.id), [])
      assert.equal((await store.lease(row.id, 'x', later, later + 1, 0)).state, 'unknown')
    })

    it('upload cap: of many opening at once, exactly the cap get in; expired ones do not count', async () => {
      const store = new UploadStore(db)
      const now = Date.now()
      const caller = 'did:plc:capped'
      // One idle, unleased session: expired, not counted.
      await store.insert(
        uploadRow({ caller_did: caller, created_at: now - 100_000, updated_at: now - 100_000 }),
        1,
        0,
      )
      const tries = Array.from({ length: 30 }, () =>
        store.insert(
          uploadRow({ caller_did: caller, created_at: now, updated_at: now }),
          5,
          now - 60_000,
        ),
      )
      // More accounts at once: without the lock, PostgreSQL let about half of them past
      // the cap (checked when this test was written).
      const more = Array.from({ length: 8 }, async (_, i) => {
        const account = `did:plc:capped${i}`
        const results = await Promise.all(
          Array.from({ length: 30 }, () =>
            store.insert(
              uploadRow({ caller_did: account, created_at: now, updated_at: now }),
              3,
              0,
            ),
          ),
        )
        return results.filter(Boolean).length
      })
      assert.deepEqual(await Promise.all(more), Array(8).fill(3))
      // Another account is not held up by this one's cap.
      const other = store.insert(uploadRow({ caller_did: 'did:plc:free' }), 5, 0)
      const results = await Promise.all(tries)
      assert.equal(results.filter(Boolean).length, 5)
      assert.equal(await other, true)
      assert.equal(
        await store.insert(
          uploadRow({ caller_did: caller, created_at: now, updated_at: now }),
          5,
          now - 60_000,
        ),
        false,
      )
    })

    it('leases: of many requests leasing one session at once, one gets it; one sweeper claims it', async () => {
      const store = new UploadStore(db)
      const now = Date.now()
      const row = uploadRow({ caller_did: 'did:plc:race', created_at: now, updated_at: now })
      await store.insert(row, 10, 0)
      const leases = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.lease(row.id, `owner-${i}`, now, now + 30_000, now - 60_000),
        ),
      )
      assert.equal(leases.filter((l) => l.state === 'leased').length, 1)
      assert.equal(leases.filter((l) => l.state === 'busy').length, 19)
      await store.release(row.id, leases.find((l) => l.state === 'leased')!.row.lease_owner!, now)
      const later = now + 120_000
      const claims = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.claimIdle(row.id, `sweeper-${i}`, later, later + 30_000, later - 60_000),
        ),
      )
      assert.equal(claims.filter((c) => c !== null).length, 1)
    })

    it('named locks: one holder at a time per name (on PostgreSQL, across instances too)', async () => {
      const other = await reopen()
      try {
        // On SQLite the lock is per process: both callers use one database handle.
        const locks = [
          databaseLock(db, 7),
          databaseLock(engine.name === 'postgres' ? other : db, 7),
        ]
        const shared = engine.name === 'postgres' ? locks : [locks[0]!, locks[0]!]
        const events: string[] = []
        const hold = (who: string) => async () => {
          events.push(`${who} in`)
          await new Promise((resolve) => setTimeout(resolve, 50))
          events.push(`${who} out`)
          return who
        }
        const results = await Promise.all([
          shared[0]!('session-1', hold('a')),
          shared[1]!('session-1', hold('b')),
          shared[0]!('session-2', hold('c')),
        ])
        assert.deepEqual(results, ['a', 'b', 'c'])
        const a = events.indexOf('a in')
        const b = events.indexOf('b in')
        const [first, second] = a < b ? ['a', 'b'] : ['b', 'a']
        assert.ok(
          events.indexOf(`${first} out`) < events.indexOf(`${second} in`),
          events.join(', '),
        )
        // Another name is not held up.
        assert.ok(events.indexOf('c in') < events.indexOf(`${first} out`), events.join(', '))
        // A failure releases the lock.
        await assert.rejects(
          shared[1]!('session-1', () => {
            throw new Error('refresh failed')
          }),
          /refresh failed/,
        )
        assert.equal(await shared[0]!('session-1', () => 'again'), 'again')
      } finally {
        await other.close()
      }
    })

    it('OAuth: pending authorizations expire after an hour, sessions kept per scope', async () => {
      const store = new OAuthStore(db)
      const now = 1_750_000_000_000
      const sealed = randomBytes(40)
      await store.setState('k1', sealed, now)
      await store.setState('k1', Buffer.from('replaced'), now)
      assert.deepEqual(Buffer.from((await store.state('k1', now + 1000))!), Buffer.from('replaced'))
      assert.equal(await store.state('k1', now + 3_600_001), null)
      // Storing another drops the abandoned one.
      await store.setState('k2', sealed, now + 3_600_001)
      assert.equal(await store.state('k1', now), null)
      await store.deleteState('k2')
      assert.equal(await store.state('k2', now + 3_600_001), null)

      await store.setSession('did:plc:o1', sealed, 'atproto a', now)
      await store.setSession('did:plc:o2', sealed, 'atproto b', now)
      await store.setSession('did:plc:o2', Buffer.from('newer'), 'atproto b', now + 1)
      assert.deepEqual(Buffer.from((await store.session('did:plc:o1'))!), sealed)
      assert.deepEqual(Buffer.from((await store.session('did:plc:o2'))!), Buffer.from('newer'))
      assert.equal(await store.dropOtherScopes('atproto a'), 1)
      assert.equal(await store.hasSession('did:plc:o2'), false)
      await store.deleteSession('did:plc:o1')
      assert.equal(await store.session('did:plc:o1'), null)
    })

    it('PDS sessions: sealed bytes round-trip; a newer login wins', async () => {
      const store = new SessionStore(db, randomBytes(32))
      const session: StoredSession = {
        did: DID,
        handle: 'alice.test',
        pdsEndpoint: 'http://localhost:1',
        accessJwt: 'a',
        refreshJwt: 'r',
        active: true,
      }
      const first = await store.save(session)
      assert.deepEqual((await store.load(DID))?.session, session)
      const second = await store.save({ ...session, accessJwt: 'b' })
      assert.equal(await store.update(first, { ...session, accessJwt: 'stale' }), false)
      assert.equal(await store.update(second, { ...session, accessJwt: 'c' }), true)
      assert.equal((await store.load(DID))?.session.accessJwt, 'c')
      assert.equal(await store.isProfileChecked(DID), false)
      await store.markProfileChecked(DID)
      assert.equal(await store.isProfileChecked(DID), true)
      await store.delete(DID, first)
      assert.equal(await store.exists(DID), true)
      await store.delete(DID)
      assert.equal(await store.load(DID), null)
    })

    it('hold health: a check records status and latency, a hold down is refused by name', async () => {
      let healthy = true
      const server = createServer((request, response) => {
        response.statusCode = request.url === '/xrpc/_health' && healthy ? 200 : 503
        response.end('{}')
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const address = server.address()
      const endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
      let clock = 1_750_000_000_000
      const health = new HoldHealth({
        db,
        fetch: (input, init) => fetch(input, init),
        intervalMs: 60_000,
        logger: pino({ level: 'silent' }),
        now: () => clock,
      })
      const hold = { did: 'did:web:hold-health.test', endpoint }
      try {
        await health.assertUp(hold) // never checked: not refused
        const up = await health.check(hold)
        assert.equal(up.status, 'up')
        assert.equal(typeof up.latencyMs, 'number')
        healthy = false
        clock += 1000
        const down = await health.check(hold)
        assert.deepEqual([down.status, down.latencyMs, down.since], ['down', null, clock])
        assert.match(down.error ?? '', /503/)
        clock += 1000
        await health.check(hold)
        assert.equal((await health.statuses()).find((s) => s.did === hold.did)?.since, clock - 1000)
        await assert.rejects(health.assertUp(hold), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'UNAVAILABLE')
          assert.match(error.message, /hold did:web:hold-health\.test .* is down/)
          return true
        })
        // A failed check long past is not believed any more.
        clock += 10 * 60_000
        await health.assertUp(hold)
      } finally {
        await health.close()
        server.close()
      }
    })

    it('device flow: approve, issue once, verify, list, revoke; web sessions; blob aliases', async () => {
      let clock = 1_750_000_000_000
      const devices = new DeviceFlow({ db, codeLifetime: 600, interval: 5, now: () => clock })
      const started = await devices.start('laptop')
      assert.equal((await devices.pending(started.userCode.toLowerCase()))?.clientName, 'laptop')
      assert.deepEqual(await devices.poll(started.deviceCode), { error: 'authorization_pending' })
      assert.deepEqual(await devices.poll(started.deviceCode), { error: 'slow_down' })
      assert.equal(
        await devices.decide(started.userCode, { did: DID, handle: 'alice.test' }, true),
        true,
      )
      clock += 10_000
      const issued = await devices.poll(started.deviceCode)
      assert.ok('secret' in issued)
      assert.deepEqual(await devices.poll(started.deviceCode), { error: 'invalid_grant' })
      assert.equal(await devices.verify(DID, issued.secret), true)
      assert.equal(await devices.verify(DID, `${issued.secret}x`), false)
      const [device] = await devices.list(DID)
      assert.equal(device?.name, 'laptop')
      assert.equal(device?.lastUsedAt, clock)
      assert.equal(await devices.revoke(DID, device!.id), true)
      assert.equal(await devices.verify(DID, issued.secret), false)
      clock += 700_000
      assert.deepEqual(await devices.poll((await devices.start('old')).deviceCode), {
        error: 'authorization_pending',
      })

      const web = new WebSessions(db, 60_000, () => clock)
      const cookie = await web.create({ did: DID, handle: null })
      assert.deepEqual(await web.find(cookie), { did: DID, handle: null })
      clock += 60_001
      assert.equal(await web.find(cookie), null)

      const aliases = new BlobAliases(db)
      const sha512 = `sha512:${'f'.repeat(128)}`
      assert.equal(await aliases.storedDigest('did:web:h', sha512), sha512)
      await aliases.record('did:web:h', sha512, D1)
      await aliases.record('did:web:h', sha512, D2)
      assert.equal(await aliases.storedDigest('did:web:h', sha512), D2)
    })
  })
}
