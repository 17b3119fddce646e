import { type Kysely, sql } from 'kysely'

/**
 * Indexes on JSON fields of records, for the queries of `layers/` and `stats/`: layer
 * records by pusher (quota, export, erasure), by manifest (getLayersForManifest, re-push)
 * and by digest (garbage collection), stats records by owner. The expressions must read
 * exactly as in those queries.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX record_user_did_idx ON record (collection, json_extract(value, '$.userDid'))`.execute(
    db,
  )
  await sql`CREATE INDEX record_manifest_idx ON record (collection, json_extract(value, '$.manifest'))`.execute(
    db,
  )
  await sql`CREATE INDEX record_digest_idx ON record (collection, json_extract(value, '$.digest'))`.execute(
    db,
  )
  await sql`CREATE INDEX record_owner_did_idx ON record (collection, json_extract(value, '$.ownerDid'))`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const name of [
    'record_owner_did_idx',
    'record_digest_idx',
    'record_manifest_idx',
    'record_user_did_idx',
  ]) {
    await db.schema.dropIndex(name).execute()
  }
}
