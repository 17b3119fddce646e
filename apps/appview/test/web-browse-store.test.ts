// What the web pages read from the index (web/browse-store.ts), on SQLite and PostgreSQL:
// the index is filled through its one write entry point (applyRecord) with lexicon-valid
// records, then search (case-insensitive, literal % and _, pages of 20), recent and popular
// lists, tags with their manifests, stars, pulls and the holds a user may push to are read
// back the same on both engines.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  manifestRkey,
  NSID,
  repoPageRkey,
  SELF_RKEY,
  statsRkey,
  tagRkey,
} from '@atcr/core/lexicons'
import type { AppViewDatabase } from '../src/db/index.ts'
import { applyRecord, type RecordChange } from '../src/ingest/apply.ts'
import { BrowseStore } from '../src/web/browse-store.ts'
import { testEngines } from './engines.ts'

const ALICE = 'did:plc:alicealicealicealice'
const BOB = 'did:plc:bobbobbobbobbobbobbob'
const HOLD = 'did:web:hold.example.com'
const OPEN_HOLD = 'did:web:open.example.com'
const CLOSED_HOLD = 'did:web:closed.example.com'
const IMAGE = 'application/vnd.oci.image.manifest.v1+json'

const digest = (seed: string) => `sha256:${createHash('sha256').update(seed).digest('hex')}`
const time = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString()

function manifest(did: string, repository: string, minute: number, extra = {}): RecordChange {
  const d = digest(`${did} ${repository} ${minute}`)
  return {
    did,
    collection: NSID.manifest,
    rkey: manifestRkey(d),
    record: {
      $type: NSID.manifest,
      repository,
      digest: d,
      mediaType: IMAGE,
      schemaVersion: 2,
      createdAt: time(minute),
      holdDid: HOLD,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        size: 100,
        digest: digest(`c${d}`),
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          size: 900,
          digest: digest(`l${d}`),
        },
      ],
      ...extra,
    },
  }
}

function tag(did: string, repository: string, name: string, manifestDigest: string): RecordChange {
  return {
    did,
    collection: NSID.tag,
    rkey: tagRkey(repository, name),
    record: {
      $type: NSID.tag,
      repository,
      tag: name,
      manifest: `at://${did}/${NSID.manifest}/${manifestRkey(manifestDigest)}`,
      manifestDigest,
      updatedAt: time(0),
    },
  }
}

const digestOf = (change: RecordChange) => (change.record as { digest: string }).digest

const engines = testEngines()
after(() => engines.close())

for (const engine of engines.engines) {
  describe(`web pages' reads of the index on ${engine.name}`, { skip: engine.skip }, () => {
    let db: AppViewDatabase
    let store: BrowseStore
    const apply = async (change: RecordChange) =>
      assert.equal(await applyRecord(db.db, change), change.record ? 'indexed' : 'deleted')

    before(async () => {
      ;({ db } = await engine.open())
      store = new BrowseStore(db)
      await db.db
        .insertInto('index_account')
        .values([
          { did: ALICE, handle: 'alice.example.com', auto_remove_untagged: 0, indexed_at: 1 },
          { did: BOB, handle: 'bob.example.com', auto_remove_untagged: 0, indexed_at: 1 },
        ])
        .execute()
      // 25 repositories of Alice's, one push a minute; then Bob's, which Alice stars.
      for (let i = 0; i < 25; i++) await apply(manifest(ALICE, `tool-${i}`, i))
      await apply(tag(ALICE, 'tool-3', 'v1.2', digestOf(manifest(ALICE, 'tool-3', 3))))
      const bobs = manifest(BOB, 'web_app', 30, {
        annotations: { 'org.opencontainers.image.description': 'A 100% handmade server' },
      })
      await apply(bobs)
      await apply(tag(BOB, 'web_app', 'latest', digestOf(bobs)))
      await apply({
        did: ALICE,
        collection: NSID.sailorStar,
        rkey: 'star1',
        record: {
          $type: NSID.sailorStar,
          subject: `at://${BOB}/${NSID.repoPage}/${repoPageRkey('web_app')}`,
          createdAt: time(40),
        },
      })
      await apply({
        did: HOLD,
        collection: NSID.holdStats,
        rkey: statsRkey(ALICE, 'tool-7'),
        record: {
          $type: NSID.holdStats,
          ownerDid: ALICE,
          repository: 'tool-7',
          pullCount: 12,
          pushCount: 1,
          updatedAt: time(41),
        },
      })
      const captain = (owner: string, allowAllCrew: boolean) => ({
        $type: NSID.holdCaptain,
        owner,
        public: true,
        allowAllCrew,
        enableBlueskyPosts: false,
        deployedAt: time(0),
      })
      await apply({
        did: HOLD,
        collection: NSID.holdCaptain,
        rkey: SELF_RKEY,
        record: captain(ALICE, false),
      })
      await apply({
        did: OPEN_HOLD,
        collection: NSID.holdCaptain,
        rkey: SELF_RKEY,
        record: captain(BOB, true),
      })
      await apply({
        did: CLOSED_HOLD,
        collection: NSID.holdCaptain,
        rkey: SELF_RKEY,
        record: captain(BOB, false),
      })
    })
    after(() => db?.close())

    it('searches by name, handle, description and tag, case-insensitive, in pages', async () => {
      const names = async (query: string, offset = 0) =>
        (await store.search(query, offset, 20)).results.map((r) => `${r.handle}/${r.repository}`)
      const first = await store.search('TOOL-', 0, 20)
      assert.equal(first.results.length, 20)
      assert.equal(first.more, true)
      assert.equal(first.results[0]!.repository, 'tool-24', 'newest push first')
      const second = await store.search('tool-', 20, 20)
      assert.equal(second.results.length, 5)
      assert.equal(second.more, false)
      assert.equal(second.results.at(-1)!.repository, 'tool-0')
      assert.deepEqual(await names('bob.example'), ['bob.example.com/web_app'])
      assert.deepEqual(await names('handmade'), ['bob.example.com/web_app'])
      assert.deepEqual(await names('v1.2'), ['alice.example.com/tool-3'])
      // % and _ are the user's characters, not wildcards.
      assert.deepEqual(await names('100%'), ['bob.example.com/web_app'])
      assert.deepEqual(await names('b_app'), ['bob.example.com/web_app'])
      assert.deepEqual(await names('l-1_'), [])
      assert.deepEqual(await names('%'), ['bob.example.com/web_app'])
    })

    it('lists recent and popular repositories with their counts', async () => {
      const recent = await store.recentRepositories(3)
      assert.deepEqual(
        recent.map((r) => r.repository),
        ['web_app', 'tool-24', 'tool-23'],
      )
      assert.equal(recent[0]!.summary, 'A 100% handmade server')
      const popular = await store.popularRepositories(5)
      assert.deepEqual(
        popular.map((r) => [r.repository, r.stars, r.pulls]),
        [
          ['web_app', 1, 0],
          ['tool-7', 0, 12],
        ],
      )
    })

    it('reads a repository: tags with manifests, stars of a user, pulls', async () => {
      const [latest] = await store.tags(BOB, 'web_app')
      assert.equal(latest!.tag, 'latest')
      assert.equal(latest!.manifest!.size, 1000)
      assert.equal(latest!.manifest!.holdDid, HOLD)
      assert.equal(await store.starCount(BOB, 'web_app'), 1)
      assert.deepEqual(await store.starKeys(ALICE, BOB, 'web_app'), ['star1'])
      assert.deepEqual(await store.starKeys(BOB, BOB, 'web_app'), [])
      assert.equal(await store.pullCount(ALICE, 'tool-7'), 12)
      assert.equal(await store.pullCount(ALICE, 'tool-8'), 0)
      assert.deepEqual(
        (await store.starsBy(ALICE)).map((s) => [s.subjectHandle, s.repository]),
        [['bob.example.com', 'web_app']],
      )
      assert.equal(await store.didOfHandle('Alice.Example.com'), ALICE)
    })

    it('offers the holds a user owns, is crew on, or that take anyone', async () => {
      await apply({
        did: CLOSED_HOLD,
        collection: NSID.holdCrew,
        rkey: 'alice',
        record: {
          $type: NSID.holdCrew,
          member: ALICE,
          role: 'writer',
          permissions: ['blob:write'],
          addedAt: time(50),
        },
      })
      const holds = await store.holdsFor(ALICE, { includeOpen: true })
      assert.deepEqual(holds.map((h) => [h.holdDid, h.relation]).sort(), [
        [CLOSED_HOLD, 'crew'],
        [HOLD, 'owner'],
        [OPEN_HOLD, 'open'],
      ])
      const own = await store.holdsFor(ALICE, { includeOpen: false })
      assert.deepEqual(own.map((h) => h.holdDid).sort(), [CLOSED_HOLD, HOLD])
    })
  })
}
