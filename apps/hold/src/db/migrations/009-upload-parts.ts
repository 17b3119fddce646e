import type { Kysely } from 'kysely'

/**
 * The size of every part an open upload has stored, so that the bytes of uploads in
 * progress count against the uploader's quota and open-upload caps (see uploads/limits.ts).
 * A part goes with its upload (ON DELETE CASCADE).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hold_upload_part')
    .addColumn('upload_id', 'text', (c) =>
      c.notNull().references('hold_upload.id').onDelete('cascade'),
    )
    .addColumn('part_number', 'integer', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('hold_upload_part_pk', ['upload_id', 'part_number'])
    .execute()
  // In-flight bytes and open uploads are summed per uploader.
  await db.schema
    .createIndex('hold_upload_uploader_idx')
    .on('hold_upload')
    .column('uploader_did')
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('hold_upload_uploader_idx').execute()
  await db.schema.dropTable('hold_upload_part').execute()
}
