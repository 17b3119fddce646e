import { configureConnection, openSqlite, type SqliteDatabase } from '@atcr/core/sqlite'
import type { Migration } from 'kysely/migration'
import { migrations as holdMigrations } from './migrations/index.ts'
import type { HoldSchema } from './schema.ts'

export type { HoldSchema } from './schema.ts'
export { configureConnection }

/** The hold's database: kysely, the file's path (for read snapshots), and close. */
export type HoldDatabase = SqliteDatabase<HoldSchema>

export interface OpenDatabaseOptions {
  /** Defaults to the hold's migrations; tests may pass their own. */
  migrations?: Record<string, Migration>
}

/**
 * Opens (creating it if needed) the hold's SQLite file in WAL mode, with foreign keys and
 * a busy timeout, and runs the migrations it has not run yet (see `migrations/index.ts`).
 */
export function openDatabase(path: string, opts: OpenDatabaseOptions = {}): Promise<HoldDatabase> {
  return openSqlite<HoldSchema>(path, opts.migrations ?? holdMigrations)
}
