// applyRecord, the index's one write entry point, on SQLite and PostgreSQL: every indexed
// collection's create, update and delete; records its lexicon refuses (or whose key
// disagrees with its fields) are skipped, leaving no row; a batch moves the cursor with it.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { manifestRkey, NSID, repoPageRkey, statsRkey, tagRkey } from '@atcr/core/lexicons'
import { pino } from 'pino'
import type { AppViewDatabase } from '../src/db/index.ts'
import { applyRecord } from '../src/ingest/apply.ts'
import { IndexService } from '../src/ingest/index-service.ts'
import { IngestLease } from '../src/ingest/lease.ts'
import { testEngines } from './engines.ts'

const ALICE = 'did:plc:alice'
const BOB = 'did:plc:bob'
const HOLD = 'did:web:hold.test'
const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`
const CONFIG = `sha256:${'c'.repeat(64)}`
const AT = '2026-12-04T10:00:00.000Z'

function manifest(digest: string, extra: Record<string, unknown> = {}) {
  return {
    $type: NSID.manifest,
    repository: 'tools/app',
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    schemaVersion: 2,
    createdAt: AT,
    holdDid: HOLD,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: 100, digest: CONFIG },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 1000, digest: D2 }],
    annotations: { 'org.opencontainers.image.description': 'a tool' },
    ...extra,
  }
}

function tag(name: string, digest: string) {
  return {
    $type: NSID.tag,
    repository: 'tools/app',
    tag: name,
    manifest: `at://${ALICE}/${NSID.manifest}/${manifestRkey(digest)}`,
    manifestDigest: digest,
    updatedAt: AT,
  }
}

const engines = testEngines()
after(() => engines.close())

for (const engine of engines.engines) {
  describe(`network index on ${engine.name}`, { skip: engine.skip }, () => {
    let db: AppViewDatabase
    before(async () => {
      ;({ db } = await engine.open())
    })
    after(() => db.close())

    const tags = () =>
      db.db
        .selectFrom('index_tag')
        .select(['tag', 'digest'])
        .where('did', '=', ALICE)
        .orderBy('tag')
        .execute()

    it('manifests and tags: create, update, delete; the account row appears', async () => {
      const index = { manifest: NSID.manifest, tag: NSID.tag }
      assert.equal(
        await applyRecord(db.db, {
          did: ALICE,
          collection: index.manifest,
          rkey: manifestRkey(D1),
          record: manifest(D1),
        }),
        'indexed',
      )
      const row = await db.db.selectFrom('index_manifest').selectAll().executeTakeFirstOrThrow()
      assert.equal(row.repository, 'tools/app')
      assert.equal(row.size, 1100)
      assert.equal(typeof row.size, 'number')
      assert.equal(row.description, 'a tool')
      assert.equal(row.config_digest, CONFIG)
      assert.equal(row.hold_did, HOLD)
      assert.equal(row.artifact_type, null)
      assert.equal(JSON.parse(row.record).digest, D1)
      const account = await db.db.selectFrom('index_account').selectAll().executeTakeFirstOrThrow()
      assert.equal(account.did, ALICE)

      for (const name of ['v1', 'latest']) {
        await applyRecord(db.db, {
          did: ALICE,
          collection: index.tag,
          rkey: tagRkey('tools/app', name),
          record: tag(name, D1),
        })
      }
      // The tag moves: same key, another manifest.
      await applyRecord(db.db, {
        did: ALICE,
        collection: index.tag,
        rkey: tagRkey('tools/app', 'latest'),
        record: tag('latest', D2),
      })
      assert.deepEqual(await tags(), [
        { tag: 'latest', digest: D2 },
        { tag: 'v1', digest: D1 },
      ])
      assert.equal(
        await applyRecord(db.db, {
          did: ALICE,
          collection: index.tag,
          rkey: tagRkey('tools/app', 'v1'),
          record: null,
        }),
        'deleted',
      )
      assert.deepEqual(await tags(), [{ tag: 'latest', digest: D2 }])
      await applyRecord(db.db, {
        did: ALICE,
        collection: index.manifest,
        rkey: manifestRkey(D1),
        record: null,
      })
      assert.equal((await db.db.selectFrom('index_manifest').selectAll().execute()).length, 0)
    })

    it('an image index records its platforms and the sum of its children', async () => {
      const child = (digest: string, architecture: string, variant?: string) => ({
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 500,
        digest,
        platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
      })
      const index = manifest(D2, {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [child(D1, 'amd64'), child(CONFIG, 'arm64', 'v8')],
      })
      delete (index as Record<string, unknown>).config
      delete (index as Record<string, unknown>).layers
      await applyRecord(db.db, {
        did: ALICE,
        collection: NSID.manifest,
        rkey: manifestRkey(D2),
        record: index,
      })
      const row = await db.db
        .selectFrom('index_manifest')
        .selectAll()
        .where('digest', '=', D2)
        .executeTakeFirstOrThrow()
      assert.equal(row.size, 1000)
      assert.deepEqual(JSON.parse(row.platforms!), [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64', variant: 'v8' },
      ])
    })

    it('refuses records the lexicon refuses, or keyed as another record, writing nothing', async () => {
      const before = await db.db.selectFrom('index_manifest').selectAll().execute()
      const bad = [
        // Missing its digest.
        { rkey: manifestRkey(D1), record: { ...manifest(D1), digest: undefined } },
        // Keyed by another digest.
        { rkey: manifestRkey(D1), record: manifest(CONFIG) },
        // A size that is not an integer.
        { rkey: manifestRkey(D1), record: manifest(D1, { layers: [{ size: 'big' }] }) },
      ]
      for (const { rkey, record } of bad) {
        const outcome = await applyRecord(db.db, {
          did: BOB,
          collection: NSID.manifest,
          rkey,
          record: JSON.parse(JSON.stringify(record)),
        })
        assert.equal(outcome, 'invalid')
      }
      const wrongKey = await applyRecord(db.db, {
        did: BOB,
        collection: NSID.tag,
        rkey: tagRkey('tools/app', 'other'),
        record: tag('v9', D1),
      })
      assert.equal(wrongKey, 'invalid')
      assert.deepEqual(await db.db.selectFrom('index_manifest').selectAll().execute(), before)
      assert.equal(
        (await db.db.selectFrom('index_account').where('did', '=', BOB).selectAll().execute())
          .length,
        0,
      )
      assert.equal(
        await applyRecord(db.db, {
          did: BOB,
          collection: 'app.bsky.feed.post',
          rkey: 'x',
          record: { text: 'hi' },
        }),
        'ignored',
      )
    })

    it('repo pages, stars and sailor profiles', async () => {
      await applyRecord(db.db, {
        did: ALICE,
        collection: NSID.repoPage,
        rkey: repoPageRkey('tools/app'),
        record: {
          $type: NSID.repoPage,
          repository: 'tools/app',
          description: '# App',
          createdAt: AT,
          updatedAt: AT,
        },
      })
      await applyRecord(db.db, {
        did: BOB,
        collection: NSID.sailorStar,
        rkey: '3star',
        record: {
          $type: NSID.sailorStar,
          subject: `at://${ALICE}/${NSID.repoPage}/${repoPageRkey('tools/app')}`,
          createdAt: AT,
        },
      })
      await applyRecord(db.db, {
        did: BOB,
        collection: NSID.sailorProfile,
        rkey: 'self',
        record: {
          $type: NSID.sailorProfile,
          createdAt: AT,
          defaultHold: HOLD,
          autoRemoveUntagged: true,
          ociClient: 'podman',
        },
      })
      const page = await db.db.selectFrom('index_repo_page').selectAll().executeTakeFirstOrThrow()
      assert.equal(page.description, '# App')
      const star = await db.db.selectFrom('index_star').selectAll().executeTakeFirstOrThrow()
      assert.deepEqual(
        { did: star.did, subject: star.subject_did, repository: star.repository },
        { did: BOB, subject: ALICE, repository: 'tools/app' },
      )
      const bob = await db.db
        .selectFrom('index_account')
        .selectAll()
        .where('did', '=', BOB)
        .executeTakeFirstOrThrow()
      assert.deepEqual(
        [bob.default_hold, bob.auto_remove_untagged, bob.oci_client],
        [HOLD, 1, 'podman'],
      )
      await applyRecord(db.db, {
        did: BOB,
        collection: NSID.sailorStar,
        rkey: '3star',
        record: null,
      })
      assert.equal((await db.db.selectFrom('index_star').selectAll().execute()).length, 0)
    })

    it('hold captain, crew and stats records', async () => {
      await applyRecord(db.db, {
        did: HOLD,
        collection: NSID.holdCaptain,
        rkey: 'self',
        record: {
          $type: NSID.holdCaptain,
          owner: ALICE,
          public: true,
          allowAllCrew: false,
          enableBlueskyPosts: false,
          deployedAt: AT,
          region: 'eu',
        },
      })
      await applyRecord(db.db, {
        did: HOLD,
        collection: NSID.holdCrew,
        rkey: 'crewbob',
        record: {
          $type: NSID.holdCrew,
          member: BOB,
          role: 'write',
          permissions: ['blob:read', 'blob:write'],
          addedAt: AT,
        },
      })
      const stats = {
        $type: NSID.holdStats,
        ownerDid: ALICE,
        repository: 'tools/app',
        pullCount: 7,
        pushCount: 2,
        updatedAt: AT,
        lastPush: AT,
      }
      const rkey = statsRkey(ALICE, 'tools/app')
      await applyRecord(db.db, { did: HOLD, collection: NSID.holdStats, rkey, record: stats })
      await applyRecord(db.db, {
        did: HOLD,
        collection: NSID.holdStats,
        rkey,
        record: { ...stats, pullCount: 8 },
      })
      const captain = await db.db
        .selectFrom('index_hold_captain')
        .selectAll()
        .executeTakeFirstOrThrow()
      assert.deepEqual([captain.owner_did, captain.public, captain.allow_all_crew], [ALICE, 1, 0])
      const crew = await db.db.selectFrom('index_hold_crew').selectAll().executeTakeFirstOrThrow()
      assert.deepEqual(JSON.parse(crew.permissions), ['blob:read', 'blob:write'])
      const row = await db.db.selectFrom('index_repo_stats').selectAll().executeTakeFirstOrThrow()
      assert.deepEqual([row.pull_count, row.push_count, row.last_push], [8, 2, AT])
      // Hold records make no account of the hold.
      const holdAccount = await db.db
        .selectFrom('index_account')
        .where('did', '=', HOLD)
        .selectAll()
        .execute()
      assert.equal(holdAccount.length, 0)
      await applyRecord(db.db, { did: HOLD, collection: NSID.holdStats, rkey, record: null })
      assert.equal((await db.db.selectFrom('index_repo_stats').selectAll().execute()).length, 0)
    })

    it('a batch moves its cursor in the same transaction, and counts what it skipped', async () => {
      const index = new IndexService({
        db,
        resolveAccount: async () => ({ handle: 'alice.test', pdsEndpoint: 'http://pds.test' }),
        logger: pino({ level: 'silent' }),
        now: Date.now,
      })
      const source = 'ws://relay.test'
      assert.equal(await index.cursor(source), null)
      const outcomes = await index.applyBatch(
        [
          {
            did: ALICE,
            collection: NSID.tag,
            rkey: tagRkey('tools/app', 'v2'),
            record: tag('v2', D2),
          },
          { did: ALICE, collection: NSID.tag, rkey: tagRkey('tools/app', 'v3'), record: {} },
        ],
        { source, cursor: 41 },
      )
      assert.deepEqual(outcomes, ['indexed', 'invalid'])
      assert.equal(await index.cursor(source), 41)
      assert.deepEqual(index.counts, { indexed: 1, deleted: 0, invalid: 1, ignored: 0 })
      // A failing batch leaves neither its rows nor its cursor.
      const failing = {
        did: ALICE,
        collection: NSID.tag,
        rkey: tagRkey('tools/app', 'v5'),
        record: {
          get $type(): string {
            throw new Error('unreadable record')
          },
        },
      }
      await assert.rejects(
        index.applyBatch(
          [
            {
              did: ALICE,
              collection: NSID.tag,
              rkey: tagRkey('tools/app', 'v4'),
              record: tag('v4', D2),
            },
            failing,
          ],
          { source, cursor: 42 },
        ),
        /unreadable record/,
      )
      assert.equal(await index.cursor(source), 41)
      assert.ok(!(await tags()).some((t) => t.tag === 'v4'))
      // A position at or before the stored one was applied already: skipped.
      const again = await index.applyBatch(
        [
          {
            did: ALICE,
            collection: NSID.tag,
            rkey: tagRkey('tools/app', 'v4'),
            record: tag('v4', D2),
          },
        ],
        { source, cursor: 41 },
      )
      assert.deepEqual(again, ['ignored'])
      assert.ok(!(await tags()).some((t) => t.tag === 'v4'))
      await index.settled()
      const account = await db.db
        .selectFrom('index_account')
        .selectAll()
        .where('did', '=', ALICE)
        .executeTakeFirstOrThrow()
      assert.deepEqual([account.handle, account.pds_endpoint], ['alice.test', 'http://pds.test'])
    })

    it('the ingest lease: one holder, renewed by it, taken over once expired, released', async () => {
      let now = 1_000_000
      const lease = (holder: string) =>
        new IngestLease({ db, name: 'ingest', holder, ttlMs: 30_000, now: () => now })
      const a = lease('a')
      const b = lease('b')
      assert.equal(await a.acquire(), true)
      assert.equal(await b.acquire(), false)
      now += 20_000
      assert.equal(await a.acquire(), true, 'renewed')
      now += 20_000
      assert.equal(await b.acquire(), false, 'still held: renewed 20 s ago')
      now += 15_000
      assert.equal(await b.acquire(), true, 'expired: taken over')
      assert.equal(await a.acquire(), false)
      assert.deepEqual(await a.current(), { holder: 'b', expires_at: now + 30_000 })
      await a.release()
      assert.equal((await b.current())?.holder, 'b', 'only the holder releases')
      await b.release()
      assert.equal(await a.current(), null)
      assert.equal(await a.acquire(), true)
    })
  })
}
