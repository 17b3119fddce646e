import { type Kysely, sql } from 'kysely'

/**
 * io.atcr.hold.initiateUpload no longer requires a digest: an upload streamed as it
 * arrives is named only at completeUpload (which checks it). SQLite cannot drop a NOT NULL
 * constraint in place, so the table is rebuilt with `digest` nullable.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await rebuild(db, false)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`DELETE FROM hold_upload WHERE digest IS NULL`.execute(db)
  await rebuild(db, true)
}

async function rebuild(db: Kysely<unknown>, digestRequired: boolean): Promise<void> {
  await db.schema.dropIndex('hold_upload_updated_idx').execute()
  await db.schema.alterTable('hold_upload').renameTo('hold_upload_old').execute()
  await db.schema
    .createTable('hold_upload')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('digest', 'text', (c) => (digestRequired ? c.notNull() : c))
    .addColumn('uploader_did', 'text', (c) => c.notNull())
    .addColumn('driver_upload_id', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .execute()
  await sql`INSERT INTO hold_upload SELECT id, digest, uploader_did, driver_upload_id, state, created_at, updated_at FROM hold_upload_old`.execute(
    db,
  )
  await db.schema.dropTable('hold_upload_old').execute()
  await db.schema
    .createIndex('hold_upload_updated_idx')
    .on('hold_upload')
    .column('updated_at')
    .execute()
}
