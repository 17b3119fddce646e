import { type Kysely, sql } from 'kysely'

/**
 * Indexes on JSON fields of records, for the queries of `layers/` and `stats/`: layer
 * records by pusher (quota, export, erasure), by manifest (getLayersForManifest, re-push)
 * and by digest (garbage collection), stats records by owner. Queries must spell the
 * expression exactly so, `json_extract(value, '$.<field>')`, for SQLite to use them.
 */
const INDEXED_FIELDS: Record<string, string> = {
  record_user_did_idx: 'userDid',
  record_manifest_idx: 'manifest',
  record_digest_idx: 'digest',
  record_owner_did_idx: 'ownerDid',
}

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [name, field] of Object.entries(INDEXED_FIELDS)) {
    await sql
      .raw(`CREATE INDEX ${name} ON record (collection, json_extract(value, '$.${field}'))`)
      .execute(db)
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of Object.keys(INDEXED_FIELDS)) await db.schema.dropIndex(name).execute()
}
