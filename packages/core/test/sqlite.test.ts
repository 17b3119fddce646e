import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { type Kysely, sql } from 'kysely'
import { openSqlite, type SqliteDatabase } from '../src/sqlite/index.ts'
import { withStatementCache } from '../src/sqlite/statement-cache.ts'

interface Schema {
  item: { id: number; name: string; size?: number }
}

describe('service SQLite databases', () => {
  let dir: string
  let database: SqliteDatabase<Schema>
  let db: Kysely<Schema>

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-sqlite-'))
    database = await openSqlite<Schema>(join(dir, 'service.sqlite'), {
      '001-items': {
        up: async (db) => {
          await db.schema
            .createTable('item')
            .addColumn('id', 'integer', (c) => c.primaryKey())
            .addColumn('name', 'text', (c) => c.notNull())
            .execute()
        },
      },
    })
    db = database.db
  })

  after(async () => {
    await database.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('runs the same query many times with new parameters, and sees a changed schema', async () => {
    for (let id = 1; id <= 50; id++) {
      await db
        .insertInto('item')
        .values({ id, name: `n${id}` })
        .execute()
    }
    const names = []
    for (let id = 1; id <= 50; id++) {
      const row = await db.selectFrom('item').selectAll().where('id', '=', id).executeTakeFirst()
      names.push(row?.name)
    }
    assert.deepEqual(
      names,
      Array.from({ length: 50 }, (_, i) => `n${i + 1}`),
    )
    // The same `SELECT *` after a column is added returns the new column.
    await sql`ALTER TABLE item ADD COLUMN size INTEGER DEFAULT 7`.execute(db)
    const row = await db.selectFrom('item').selectAll().where('id', '=', 3).executeTakeFirst()
    assert.deepEqual(row, { id: 3, name: 'n3', size: 7 })
  })

  it('keeps a bounded number of prepared statements, the most recently used', async () => {
    const sqlite = new Database(join(dir, 'cache.sqlite'))
    const connection = withStatementCache(sqlite, 3)
    const first = connection.prepare('SELECT 1')
    assert.equal(connection.prepare('SELECT 1'), first, 'the same SQL, the same statement')
    const two = connection.prepare('SELECT 2')
    const three = connection.prepare('SELECT 3')
    assert.equal(connection.prepare('SELECT 1'), first, 'used again: moved to the end')
    connection.prepare('SELECT 4') // the fourth: drops SELECT 2, the least recently used
    assert.equal(connection.prepare('SELECT 1'), first)
    assert.equal(connection.prepare('SELECT 3'), three)
    const twoAgain = connection.prepare('SELECT 2')
    assert.notEqual(twoAgain, two, 'prepared anew once dropped')
    assert.deepEqual(twoAgain.get(), { '2': 2 })
    connection.close()
    assert.equal(sqlite.open, false)
  })
})
