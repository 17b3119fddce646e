// The AppView's SQLite database. Migrations are the files `migrations/NNN-name.ts` (each
// exporting `up`, and `down` where it can), run in name order; a new one is a new file.
import { readdirSync } from 'node:fs'
import { type Migration, openSqlite, type SqliteDatabase } from '@atcr/core/sqlite'
import type { AppViewSchema } from './schema.ts'

export type AppViewDatabase = SqliteDatabase<AppViewSchema>
export type { AppViewSchema } from './schema.ts'

const MIGRATION_FILE = /^(\d{3}-[a-z0-9-]+)\.ts$/

async function loadMigrations(): Promise<Record<string, Migration>> {
  const dir = new URL('./migrations/', import.meta.url)
  const migrations: Record<string, Migration> = {}
  for (const file of readdirSync(dir).sort()) {
    const name = MIGRATION_FILE.exec(file)?.[1]
    if (name) migrations[name] = (await import(new URL(file, dir).href)) as Migration
  }
  return migrations
}

export async function openAppViewDatabase(path: string): Promise<AppViewDatabase> {
  return openSqlite<AppViewSchema>(path, await loadMigrations())
}
