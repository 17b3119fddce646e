import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { concatBytesAsync, readCarWithRoot, verifyRepo } from '@atproto/repo'
import { sql } from 'kysely'
import { type HoldDatabase, openDatabase } from '../src/db/index.ts'
import { migrations } from '../src/db/migrations/index.ts'
import {
  type HoldRepo,
  InvalidWriteError,
  openHoldRepo,
  RecordAlreadyExistsError,
  RecordNotFoundError,
} from '../src/pds/index.ts'
import { CREW, crewRecord } from './pds-harness.ts'

const DID = 'did:web:hold.example.com'
const CAPTAIN = 'io.atcr.hold.captain'

/** Everything a failed write must leave untouched. */
async function repoState(database: HoldDatabase, repo: HoldRepo) {
  const head = await repo.reader.getHead()
  const { blocks } = await database.db
    .selectFrom('repo_block')
    .select((eb) => eb.fn.countAll<number>().as('blocks'))
    .executeTakeFirstOrThrow()
  const records = await database.db.selectFrom('record').selectAll().orderBy('rkey').execute()
  const { events } = await database.db
    .selectFrom('repo_seq')
    .select((eb) => eb.fn.countAll<number>().as('events'))
    .executeTakeFirstOrThrow()
  return { head, blocks, records, events, seq: repo.sequencer.head }
}

async function exportedRepo(repo: HoldRepo, keypair: Secp256k1Keypair) {
  const car = await concatBytesAsync(repo.reader.exportCar())
  const { root, blocks } = await readCarWithRoot(car)
  return verifyRepo(blocks, root, repo.did, keypair.did())
}

describe('hold repo writer', () => {
  let dir: string
  let database: HoldDatabase
  let repo: HoldRepo
  let keypair: Secp256k1Keypair

  before(async () => {
    dir = await makeTempDir('atcr-pds-')
    keypair = await Secp256k1Keypair.create({ exportable: true })
    database = await openDatabase(join(dir, 'hold.sqlite'))
    repo = await openHoldRepo({ db: database, did: DID, signingKey: keypair })
  })

  after(async () => {
    await repo?.close()
    await database?.close()
    await removeTempDir(dir)
  })

  it('creates the repo with a signed empty first commit and announces it', async () => {
    const head = await repo.reader.getHead()
    assert.ok(head, 'the repo has a head')
    const verified = await exportedRepo(repo, keypair)
    assert.equal(verified.creates.length, 0)
    assert.equal(verified.commit.cid.toString(), head.cid)
    const types = await database.db
      .selectFrom('repo_seq')
      .select('event_type')
      .orderBy('seq')
      .execute()
    assert.deepEqual(
      types.map((t) => t.event_type),
      ['identity', 'account', 'commit', 'sync'],
    )
    assert.equal(repo.sequencer.head, 4)
    // Pages of the log are bounded by count and by bytes (but always make progress).
    assert.deepEqual(
      (await repo.sequencer.eventsAfter(1, 2)).map((e) => e.seq),
      [2, 3],
    )
    assert.deepEqual(
      (await repo.sequencer.eventsAfter(0, 100, 1)).map((e) => e.seq),
      [1],
    )
  })

  it('records the migrations it ran, and runs none twice', async () => {
    const rows = await sql<{
      name: string
    }>`SELECT name FROM kysely_migration ORDER BY name`.execute(database.db)
    assert.deepEqual(
      rows.rows.map((r) => r.name),
      Object.keys(migrations).sort(),
    )
    const again = await openDatabase(database.path)
    await again.close()
  })

  it('stores records of any collection, each change one commit and one event', async () => {
    const before = repo.sequencer.head
    const created = await repo.writer.createRecord(CAPTAIN, 'self', {
      $type: CAPTAIN,
      owner: 'did:plc:owner',
      public: true,
      allowAllCrew: false,
      enableBlueskyPosts: false,
      deployedAt: '2025-01-01T00:00:00.000Z',
    })
    assert.equal(created.seq, before + 1)
    assert.equal(created.writes[0]?.uri, `at://${DID}/${CAPTAIN}/self`)
    const head = await repo.reader.getHead()
    assert.equal(head?.cid, created.cid)
    const record = await repo.reader.getRecord(CAPTAIN, 'self')
    assert.equal(record?.value.owner, 'did:plc:owner')
    assert.equal(record?.cid, created.writes[0]?.cid)

    const batch = await repo.writer.applyWrites([
      { action: 'create', collection: CREW, rkey: 'alice', record: crewRecord('did:plc:alice') },
      { action: 'create', collection: CREW, rkey: 'bob', record: crewRecord('did:plc:bob') },
    ])
    assert.equal(batch.seq, before + 2, 'two records, one commit, one event')
    const verified = await exportedRepo(repo, keypair)
    assert.deepEqual(verified.creates.map((c) => `${c.collection}/${c.rkey}`).sort(), [
      `${CAPTAIN}/self`,
      `${CREW}/alice`,
      `${CREW}/bob`,
    ])
  })

  it('leaves the repo exactly as it was when a write in a batch fails its precondition', async () => {
    const state = await repoState(database, repo)
    await assert.rejects(
      repo.writer.applyWrites([
        { action: 'create', collection: CREW, rkey: 'carol', record: crewRecord('did:plc:carol') },
        { action: 'create', collection: CREW, rkey: 'alice', record: crewRecord('did:plc:alice2') },
      ]),
      RecordAlreadyExistsError,
    )
    await assert.rejects(
      repo.writer.applyWrites([
        { action: 'update', collection: CREW, rkey: 'nobody', record: crewRecord('did:plc:x') },
      ]),
      RecordNotFoundError,
    )
    await assert.rejects(repo.writer.deleteRecord(CREW, 'nobody'), RecordNotFoundError)
    await assert.rejects(
      repo.writer.applyWrites([
        { action: 'delete', collection: CREW, rkey: 'alice' },
        { action: 'create', collection: CREW, rkey: 'alice', record: crewRecord('did:plc:a') },
      ]),
      InvalidWriteError,
    )
    await assert.rejects(
      repo.writer.createRecord(CREW, 'dave', { $type: CREW, weight: 1.5 }),
      InvalidWriteError,
    )
    await assert.rejects(
      repo.writer.createRecord('not a nsid', 'x', crewRecord('d')),
      InvalidWriteError,
    )
    assert.deepEqual(await repoState(database, repo), state)
    assert.equal(await repo.reader.getRecord(CREW, 'carol'), null)
  })

  it('rolls back blocks, head and index when storing the commit fails', async () => {
    const state = await repoState(database, repo)
    await sql`CREATE TRIGGER fail_seq BEFORE INSERT ON repo_seq BEGIN SELECT RAISE(ABORT, 'disk full'); END`.execute(
      database.db,
    )
    try {
      await assert.rejects(
        repo.writer.applyWrites([
          { action: 'create', collection: CREW, rkey: 'erin', record: crewRecord('did:plc:erin') },
          { action: 'delete', collection: CREW, rkey: 'bob' },
        ]),
        /disk full/,
      )
    } finally {
      await sql`DROP TRIGGER fail_seq`.execute(database.db)
    }
    assert.deepEqual(await repoState(database, repo), state)
    // The writer still works afterwards.
    const ok = await repo.writer.createRecord(CREW, 'erin', crewRecord('did:plc:erin'))
    assert.equal(ok.seq, state.seq + 1)
  })

  it('imports records in one commit: creates, updates, skips identical, no-op when unchanged', async () => {
    const alice = await repo.reader.getRecord(CREW, 'alice')
    assert.ok(alice)
    const before = repo.sequencer.head
    const result = await repo.writer.importRecords([
      { collection: CREW, rkey: 'alice', value: alice.value },
      { collection: CREW, rkey: 'bob', value: crewRecord('did:plc:bob', 'admin') },
      { collection: CREW, rkey: 'frank', value: crewRecord('did:plc:frank') },
    ])
    assert.ok(result)
    assert.equal(result.seq, before + 1)
    assert.deepEqual(
      result.writes.map((w) => [w.action, w.rkey, w.prev !== null]),
      [
        ['update', 'bob', true],
        ['create', 'frank', false],
      ],
    )
    assert.equal((await repo.reader.getRecord(CREW, 'bob'))?.value.role, 'admin')

    const none = await repo.writer.importRecords([
      { collection: CREW, rkey: 'bob', value: crewRecord('did:plc:bob', 'admin') },
      { collection: CREW, rkey: 'frank', value: crewRecord('did:plc:frank') },
    ])
    assert.equal(none, null)
    assert.equal(await repo.writer.upsertRecord(CREW, 'frank', crewRecord('did:plc:frank')), null)
    assert.equal(repo.sequencer.head, before + 1, 'no commit, no event')
  })

  it('drops replaced blocks but keeps a block another record still shares', async () => {
    const { n: blocksBefore } = await database.db
      .selectFrom('repo_block')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    for (let i = 0; i < 5; i++) {
      await repo.writer.upsertRecord(CREW, 'frank', crewRecord('did:plc:frank', `role${i}`))
    }
    const { n: blocksAfter } = await database.db
      .selectFrom('repo_block')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow()
    assert.ok(blocksAfter <= blocksBefore + 2, `blocks grew from ${blocksBefore} to ${blocksAfter}`)

    const same = crewRecord('did:plc:twin')
    await repo.writer.createRecord(CREW, 'twin1', same)
    await repo.writer.createRecord(CREW, 'twin2', same)
    await repo.writer.deleteRecord(CREW, 'twin1')
    assert.equal((await repo.reader.getRecord(CREW, 'twin2'))?.value.member, 'did:plc:twin')
    const verified = await exportedRepo(repo, keypair)
    assert.ok(verified.creates.some((c) => c.rkey === 'twin2'))
    assert.ok(!verified.creates.some((c) => c.rkey === 'twin1'))
  })

  it('serializes concurrent writers', async () => {
    const before = repo.sequencer.head
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        repo.writer.createRecord(CREW, `parallel${i}`, crewRecord(`did:plc:p${i}`)),
      ),
    )
    assert.deepEqual(
      results.map((r) => r.seq).sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, i) => before + i + 1),
    )
    const verified = await exportedRepo(repo, keypair)
    assert.equal(verified.creates.filter((c) => c.rkey.startsWith('parallel')).length, 10)
  })

  it('announces a commit too big for one #commit event as a #sync event', async () => {
    const before = repo.sequencer.head
    const result = await repo.writer.importRecords(
      Array.from({ length: 250 }, (_, i) => ({
        collection: CREW,
        rkey: `bulk${i}`,
        value: crewRecord(`did:plc:bulk${i}`),
      })),
    )
    assert.equal(result?.seq, before + 1)
    assert.equal(result?.writes.length, 250)
    const events = await database.db
      .selectFrom('repo_seq')
      .select('event_type')
      .where('seq', '>', before)
      .execute()
    assert.deepEqual(
      events.map((e) => e.event_type),
      ['sync'],
    )
    const verified = await exportedRepo(repo, keypair)
    assert.equal(verified.creates.filter((c) => c.rkey.startsWith('bulk')).length, 250)
  })

  it('refuses to open a database that holds another DID’s repo', async () => {
    await assert.rejects(
      openHoldRepo({ db: database, did: 'did:web:other.example.com', signingKey: keypair }),
      /refusing/,
    )
  })
})
