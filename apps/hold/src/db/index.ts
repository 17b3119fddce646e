import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { Kysely, SqliteDialect } from 'kysely'
import { type Migration, Migrator } from 'kysely/migration'
import { migrations as holdMigrations } from './migrations/index.ts'
import type { HoldSchema } from './schema.ts'

export type { HoldSchema } from './schema.ts'

const BUSY_TIMEOUT_MS = 5000

export interface HoldDatabase {
  db: Kysely<HoldSchema>
  /** The SQLite file: read snapshots open their own read-only connection to it. */
  path: string
  close(): Promise<void>
}

export interface OpenDatabaseOptions {
  /** Defaults to the hold's migrations; tests may pass their own. */
  migrations?: Record<string, Migration>
}

/** Sets the pragmas every connection to the hold's database uses. */
export function configureConnection(sqlite: Database.Database): void {
  sqlite.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`)
  sqlite.pragma('foreign_keys = ON')
}

/**
 * Opens (creating it if needed) the hold's SQLite database in WAL mode and brings its
 * schema up to date. The path must be a file: read snapshots need a second connection.
 */
export async function openDatabase(
  path: string,
  opts: OpenDatabaseOptions = {},
): Promise<HoldDatabase> {
  if (path === ':memory:' || path === '') {
    throw new Error('the hold database must be a file (read snapshots open it a second time)')
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
  const db = new Kysely<HoldSchema>({ dialect: new SqliteDialect({ database: sqlite }) })
  try {
    await migrate(db, opts.migrations ?? holdMigrations)
  } catch (err) {
    await db.destroy()
    throw err
  }
  return { db, path, close: () => db.destroy() }
}

async function migrate(db: Kysely<HoldSchema>, migrations: Record<string, Migration>) {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => migrations },
  })
  const { error, results } = await migrator.migrateToLatest()
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName
    throw new Error(`database migration ${failed ?? ''} failed`, { cause: error })
  }
}
