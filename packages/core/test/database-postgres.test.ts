// The PostgreSQL engine when its server goes away: a real cluster on loopback, crashed
// (SIGKILL) while the service holds a connection between two queries of a transaction.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { hasPostgres, startPostgres, type TestPostgres } from '@atcr/testkit'
import { sql } from 'kysely'
import {
  isDatabaseUnreachable,
  openPostgres,
  type PostgresDatabase,
} from '../src/database/index.ts'

describe('PostgreSQL engine: the server crashes under an open transaction', {
  skip: hasPostgres() ? false : 'postgresql is not installed',
}, () => {
  let postgres: TestPostgres
  let database: PostgresDatabase<{ notes: { id: number } }>

  before(async () => {
    postgres = await startPostgres()
    database = await openPostgres(await postgres.createDatabase('crash'), {
      '001': {
        up: async (db) => {
          await db.schema.createTable('notes').addColumn('id', 'integer').execute()
        },
      },
    })
    // The test cluster commits asynchronously: make the table outlive the crash.
    await sql`CHECKPOINT`.execute(database.db)
  })
  after(async () => {
    await database?.close()
    await postgres?.close()
  })

  it('fails the transaction as unreachable, keeps the process, and works once it is back', async () => {
    const transaction = database.db.transaction().execute(async (trx) => {
      await trx.insertInto('notes').values({ id: 1 }).execute()
      // The connection is checked out and idle here: pg reports the loss as an event.
      await postgres.crash()
      await new Promise((resolve) => setTimeout(resolve, 500))
      await trx.insertInto('notes').values({ id: 2 }).execute()
    })
    const error = await transaction.then(
      () => assert.fail('the transaction went through without its server'),
      (err: unknown) => err,
    )
    assert.ok(isDatabaseUnreachable(error), `judged unreachable: ${(error as Error).message}`)

    await postgres.restart()
    const deadline = Date.now() + 20_000
    for (;;) {
      try {
        const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM notes`.execute(
          database.db,
        )
        assert.equal(rows[0]!.n, 0, 'nothing of the interrupted transaction was kept')
        break
      } catch (err) {
        if (!isDatabaseUnreachable(err) || Date.now() > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  })
})
