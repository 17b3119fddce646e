// The AppView's database: SQLite in the data dir (the default), or PostgreSQL when
// `database.url` names one (several AppView instances share it). Migrations are the files
// `migrations/NNN-name.ts` (`.js` once built; each exporting `up`, and `down` where it can), run in name
// order on either engine; a new one is a new file.
import { readdirSync } from 'node:fs'
import { type Migration, openDatabase, type ServiceDatabase } from '@atcr/core/database'
import type { AppViewSchema } from './schema.ts'

export type AppViewDatabase = ServiceDatabase<AppViewSchema>
export type { AppViewSchema } from './schema.ts'

const MIGRATION_FILE = /^(\d{3}-[a-z0-9-]+)\.[jt]s$/

async function loadMigrations(): Promise<Record<string, Migration>> {
  const dir = new URL('./migrations/', import.meta.url)
  const migrations: Record<string, Migration> = {}
  for (const file of readdirSync(dir).sort()) {
    const name = MIGRATION_FILE.exec(file)?.[1]
    if (name) migrations[name] = (await import(new URL(file, dir).href)) as Migration
  }
  return migrations
}

export interface AppViewDatabaseOptions {
  /** A `postgres://` URL, or null for SQLite at `sqlitePath`. */
  url: string | null
  sqlitePath: string
  maxConnections?: number
}

export async function openAppViewDatabase(
  options: AppViewDatabaseOptions,
): Promise<AppViewDatabase> {
  return openDatabase<AppViewSchema>(options, await loadMigrations())
}
