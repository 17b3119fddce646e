import type { Kysely } from 'kysely'

/** Ordinary atproto blobs served by com.atproto.sync.getBlob. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('blob')
    .addColumn('cid', 'text', (c) => c.primaryKey())
    .addColumn('mime_type', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('content', 'blob', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('blob').execute()
}
