// Property-based fuzzing (fast-check) of the index's one write entry point, applyRecord, with
// records as they could arrive from any account's repository on the firehose: valid records of
// every indexed collection, mutated ones, arbitrary JSON, and keys that disagree. On SQLite and
// PostgreSQL: a change is indexed, deleted, ignored or skipped ('invalid'), never a throw (which
// would stop the consumer at that event for good); a skipped record leaves the index exactly as
// it was; a batch of them commits and moves the cursor.
// The seed is random per run; fast-check prints it (and the shrunk input) when a property fails.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { manifestRkey, NSID, repoPageRkey, statsRkey, tagRkey } from '@atcr/core/lexicons'
import { type Json, mutatedJson, weirdJsonValue } from '@atcr/testkit'
import fc from 'fast-check'
import { pino } from 'pino'
import type { AppViewDatabase } from '../src/db/index.ts'
import { applyRecord, BSKY_PROFILE, type RecordChange } from '../src/ingest/apply.ts'
import { IndexService } from '../src/ingest/index-service.ts'
import { testEngines } from './engines.ts'

const ALICE = 'did:plc:alice'
const HOLD = 'did:web:hold.test'
const D1 = `sha256:${'1'.repeat(64)}`
const AT = '2026-12-04T10:00:00.000Z'
const TABLES = [
  'index_account',
  'index_manifest',
  'index_tag',
  'index_repo_page',
  'index_star',
  'index_hold_captain',
  'index_hold_crew',
  'index_repo_stats',
] as const

/** A valid record of each indexed collection, with the key it belongs under. */
const TEMPLATES: Array<{ collection: string; did: string; rkey: string; record: Json }> = [
  {
    collection: NSID.manifest,
    did: ALICE,
    rkey: manifestRkey(D1),
    record: {
      $type: NSID.manifest,
      repository: 'tools/app',
      digest: D1,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      schemaVersion: 2,
      createdAt: AT,
      holdDid: HOLD,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: 100, digest: D1 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', size: 10, digest: D1 }],
      annotations: { 'org.opencontainers.image.description': 'a tool' },
    },
  },
  {
    collection: NSID.manifest,
    did: ALICE,
    rkey: manifestRkey(D1),
    record: {
      $type: NSID.manifest,
      repository: 'tools/app',
      digest: D1,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      schemaVersion: 2,
      createdAt: AT,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          size: 10,
          digest: D1,
          platform: { os: 'linux', architecture: 'amd64', variant: 'v8' },
        },
      ],
    },
  },
  {
    collection: NSID.tag,
    did: ALICE,
    rkey: tagRkey('tools/app', 'v1'),
    record: {
      $type: NSID.tag,
      repository: 'tools/app',
      tag: 'v1',
      manifest: `at://${ALICE}/${NSID.manifest}/${manifestRkey(D1)}`,
      manifestDigest: D1,
      updatedAt: AT,
    },
  },
  {
    collection: NSID.repoPage,
    did: ALICE,
    rkey: repoPageRkey('tools/app'),
    record: {
      $type: NSID.repoPage,
      repository: 'tools/app',
      description: '# App',
      createdAt: AT,
      updatedAt: AT,
    },
  },
  {
    collection: NSID.sailorStar,
    did: ALICE,
    rkey: '3star',
    record: {
      $type: NSID.sailorStar,
      subject: `at://${ALICE}/${NSID.repoPage}/${repoPageRkey('tools/app')}`,
      createdAt: AT,
    },
  },
  {
    collection: NSID.sailorProfile,
    did: ALICE,
    rkey: 'self',
    record: { $type: NSID.sailorProfile, createdAt: AT, defaultHold: HOLD, ociClient: 'podman' },
  },
  {
    collection: NSID.holdCaptain,
    did: HOLD,
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
  },
  {
    collection: NSID.holdCrew,
    did: HOLD,
    rkey: '3crew',
    record: {
      $type: NSID.holdCrew,
      member: ALICE,
      role: 'write',
      permissions: ['blob:read', 'blob:write'],
      addedAt: AT,
    },
  },
  {
    collection: NSID.holdStats,
    did: HOLD,
    rkey: statsRkey(ALICE, 'tools/app'),
    record: {
      $type: NSID.holdStats,
      ownerDid: ALICE,
      repository: 'tools/app',
      pullCount: 7,
      pushCount: 2,
      updatedAt: AT,
      lastPush: AT,
    },
  },
  { collection: BSKY_PROFILE, did: ALICE, rkey: 'self', record: { displayName: 'Alice' } },
]

const FIELD_NAMES = [
  ...new Set(
    TEMPLATES.flatMap((t) => Object.keys(t.record as object)).concat(['$type', 'platform']),
  ),
]

const rkeyArb = fc.oneof(
  fc.constantFrom('self', '3star', manifestRkey(D1), tagRkey('tools/app', 'v1'), ''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
)

/** A change as the firehose could bring it: mostly mutated valid records, some anything. */
const changeArb: fc.Arbitrary<RecordChange> = fc
  .tuple(
    fc.constantFrom(...TEMPLATES),
    fc.oneof(
      { arbitrary: fc.constant('valid' as const), weight: 1 },
      { arbitrary: fc.constant('mutated' as const), weight: 6 },
      { arbitrary: fc.constant('any' as const), weight: 1 },
    ),
    fc.option(rkeyArb, { freq: 4 }),
  )
  .chain(([template, kind, rkey]) => {
    const record =
      kind === 'valid'
        ? fc.constant(template.record)
        : kind === 'mutated'
          ? mutatedJson(fc.constant(template.record), { names: FIELD_NAMES })
          : fc.oneof(weirdJsonValue, fc.constant(null))
    return record.map((value) => ({
      did: template.did,
      collection: template.collection,
      rkey: rkey ?? template.rkey,
      record: value,
    }))
  })

const engines = testEngines()
after(() => engines.close())

for (const engine of engines.engines) {
  describe(`applyRecord fuzzed on ${engine.name}`, { skip: engine.skip }, () => {
    let db: AppViewDatabase
    before(async () => {
      ;({ db } = await engine.open())
      // The account exists with a PDS, so Bluesky profile changes are applied too.
      await db.db
        .insertInto('index_account')
        .values({
          did: ALICE,
          auto_remove_untagged: 0,
          indexed_at: 0,
          pds_endpoint: 'http://pds.test',
        })
        .execute()
    })
    after(() => db.close())

    const snapshot = async () => {
      const rows: Record<string, unknown> = {}
      for (const table of TABLES) rows[table] = await db.db.selectFrom(table).selectAll().execute()
      return JSON.stringify(rows)
    }

    it('any change is applied or skipped, and a skipped one leaves the index as it was', async () => {
      const seen = { indexed: 0, deleted: 0, invalid: 0, ignored: 0 }
      await fc.assert(
        fc.asyncProperty(changeArb, async (change) => {
          const before = await snapshot()
          const outcome = await applyRecord(db.db, change)
          seen[outcome]++
          if (outcome === 'invalid' || outcome === 'ignored') {
            assert.equal(await snapshot(), before, `a ${outcome} change wrote rows`)
          }
        }),
        { numRuns: engine.name === 'sqlite' ? 600 : 300 },
      )
      // The generators reach every outcome that matters, or the property proves little.
      assert.ok(seen.indexed > 0 && seen.invalid > 0 && seen.deleted > 0, JSON.stringify(seen))
    })

    it('a batch of fuzzed changes commits as a whole and moves the cursor', async () => {
      const index = new IndexService({
        db,
        resolveAccount: async () => ({ handle: 'alice.test', pdsEndpoint: 'http://pds.test' }),
        logger: pino({ level: 'silent' }),
        now: Date.now,
      })
      const source = `ws://relay.test/${engine.name}`
      let position = 0
      await fc.assert(
        fc.asyncProperty(fc.array(changeArb, { minLength: 1, maxLength: 8 }), async (changes) => {
          position++
          const outcomes = await index.applyBatch(changes, { source, cursor: position })
          assert.equal(outcomes.length, changes.length)
          assert.equal(await index.cursor(source), position)
        }),
        { numRuns: engine.name === 'sqlite' ? 150 : 80 },
      )
    })
  })
}
