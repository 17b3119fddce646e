import type { Kysely } from 'kysely'

/**
 * Multipart blob uploads in progress (io.atcr.hold.initiateUpload ... completeUpload), kept
 * here so that an upload survives a restart and abandoned ones can be swept.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hold_upload')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('uploader_did', 'text', (c) => c.notNull())
    .addColumn('driver_upload_id', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('created_at', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'integer', (c) => c.notNull())
    .execute()
  // The sweeper looks for uploads without activity since a cutoff.
  await db.schema
    .createIndex('hold_upload_updated_idx')
    .on('hold_upload')
    .column('updated_at')
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('hold_upload').execute()
}
