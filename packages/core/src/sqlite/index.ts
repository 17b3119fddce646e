// The services' SQLite databases: kysely over better-sqlite3 in WAL mode, brought up to
// date at open by numbered migrations (`001-name`, `002-name`, ... run in name order and
// recorded in the `kysely_migration` table).
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'
import { type Migration, Migrator } from 'kysely/migration'
import { withStatementCache } from './statement-cache.ts'

export type { Migration }

const BUSY_TIMEOUT_MS = 5000

export interface SqliteDatabase<Schema> {
  engine: 'sqlite'
  db: Kysely<Schema>
  /** The SQLite file, for code that opens a second (read-only) connection to it. */
  path: string
  close(): Promise<void>
}

/** Sets the pragmas every connection to a service database uses. */
export function configureConnection(sqlite: Database.Database): void {
  sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  sqlite.pragma('foreign_keys = ON')
}

/** Opens (creating it if needed) a SQLite file in WAL mode and runs pending migrations. */
export async function openSqlite<Schema>(
  path: string,
  migrations: Record<string, Migration>,
): Promise<SqliteDatabase<Schema>> {
  if (path === ':memory:' || path === '') {
    throw new Error('a service database must be a file (read snapshots open it a second time)')
  }
  mkdirSync(dirname(path), { recursive: true })
  const sqlite = new Database(path)
  try {
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma('synchronous = NORMAL')
    configureConnection(sqlite)
  } catch (err) {
    sqlite.close()
    throw err
  }
  const db = new Kysely<Schema>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
  })
  try {
    await migrate(db, migrations)
  } catch (err) {
    await db.destroy()
    throw err
  }
  return { engine: 'sqlite', db, path, close: () => db.destroy() }
}

/** Runs pending migrations (either engine). */
export async function migrate<Schema>(db: Kysely<Schema>, migrations: Record<string, Migration>) {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } })
  const { error, results } = await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName
    throw new Error(`database migration ${failed ?? ''} failed`, { cause: error })
  }
}
