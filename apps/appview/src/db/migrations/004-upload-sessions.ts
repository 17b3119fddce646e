import type { Kysely } from 'kysely'

/**
 * Blob upload sessions of the distribution API (see registry/upload-sessions.ts), so that
 * an upload outlives the process that began it and any AppView sharing this database can
 * continue it. The bytes are elsewhere: full parts on the hold, the part being received in
 * a file under <data_dir>/uploads. Times are Unix milliseconds; plain columns, nothing
 * SQLite-only.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('registry_upload')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('caller_did', 'text', (c) => c.notNull())
    .addColumn('hold_did', 'text', (c) => c.notNull())
    .addColumn('hold_endpoint', 'text', (c) => c.notNull())
    // The hold's upload, once the first part went out (null until then).
    .addColumn('hold_upload_id', 'text')
    // The digest the client named when it began (POST ?digest=), if it did.
    .addColumn('expected_digest', 'text')
    // Bytes received and recorded; of those, `sent` are in completed parts on the hold and
    // the rest in the spill file.
    .addColumn('received', 'bigint', (c) => c.notNull())
    .addColumn('sent', 'bigint', (c) => c.notNull())
    // The request writing to the session now, and until when its lease holds (0: none).
    .addColumn('lease_owner', 'text')
    .addColumn('lease_until', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()
  // The per-account cap counts an account's sessions; the sweeper looks for idle ones.
  await db.schema
    .createIndex('registry_upload_caller')
    .on('registry_upload')
    .column('caller_did')
    .execute()
  await db.schema
    .createIndex('registry_upload_updated')
    .on('registry_upload')
    .column('updated_at')
    .execute()
  await db.schema
    .createTable('registry_upload_part')
    .addColumn('upload_id', 'text', (c) => c.notNull())
    .addColumn('part_number', 'integer', (c) => c.notNull())
    .addColumn('etag', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('registry_upload_part_pk', ['upload_id', 'part_number'])
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('registry_upload_part').execute()
  await db.schema.dropTable('registry_upload').execute()
}
