import type { Kysely } from 'kysely'

/**
 * Blobs an account uploaded and completed but no push of theirs names yet: they count
 * against the uploader's quota until a layer record names them or garbage collection may
 * take them (gc.grace_period), so completing uploads without pushing cannot pass a quota.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hold_upload_blob')
    .addColumn('uploader_did', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('completed_at', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('hold_upload_blob_pk', ['uploader_did', 'digest'])
    .execute()
  await db.schema
    .createIndex('hold_upload_blob_completed_idx')
    .on('hold_upload_blob')
    .column('completed_at')
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('hold_upload_blob').execute()
}
