import type { LexMap } from '@atproto/lex-data'
import { lexParse } from '@atproto/lex-json'
import { type Kysely, sql } from 'kysely'
import { blobCidsOf } from '../../pds/storage/record-blobs.ts'

const PAGE = 500

/**
 * The blobs each record names (for com.atproto.sync.listBlobs), filled in from the
 * records already stored; the writer keeps it current from here on.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('record_blob')
    .addColumn('blob_cid', 'text', (c) => c.notNull())
    .addColumn('collection', 'text', (c) => c.notNull())
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('record_blob_pkey', ['blob_cid', 'collection', 'rkey'])
    .execute()
  await db.schema
    .createIndex('record_blob_path_idx')
    .on('record_blob')
    .columns(['collection', 'rkey'])
    .execute()

  let after = { collection: '', rkey: '' }
  for (;;) {
    const { rows } = await sql<{ collection: string; rkey: string; value: string }>`
      SELECT collection, rkey, value FROM record
      WHERE (collection, rkey) > (${after.collection}, ${after.rkey})
      ORDER BY collection, rkey LIMIT ${PAGE}`.execute(db)
    for (const { collection, rkey, value } of rows) {
      for (const cid of blobCidsOf(collection, lexParse<LexMap>(value))) {
        await sql`INSERT INTO record_blob (blob_cid, collection, rkey)
          VALUES (${cid}, ${collection}, ${rkey})`.execute(db)
      }
    }
    const last = rows.at(-1)
    if (!last || rows.length < PAGE) break
    after = last
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('record_blob').execute()
}
