import { type Kysely, sql } from 'kysely'

/** The embedded PDS: repo head, blocks, record index and the firehose event log. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('repo_root')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('rev', 'text', (c) => c.notNull())
    .addColumn('indexed_at', 'text', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('repo_block')
    .addColumn('cid', 'text', (c) => c.primaryKey())
    .addColumn('repo_rev', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('content', 'blob', (c) => c.notNull())
    .execute()
  // sync.getRepo?since= reads blocks newer than a rev.
  await db.schema
    .createIndex('repo_block_rev_idx')
    .on('repo_block')
    .columns(['repo_rev', 'cid'])
    .execute()

  await db.schema
    .createTable('record')
    .addColumn('collection', 'text', (c) => c.notNull())
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addColumn('cid', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('repo_rev', 'text', (c) => c.notNull())
    .addColumn('indexed_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('record_pkey', ['collection', 'rkey'])
    .execute()
  // Removed blocks are kept while another record still points at the same CID.
  await db.schema.createIndex('record_cid_idx').on('record').column('cid').execute()

  await sql`CREATE TABLE repo_seq (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    frame BLOB NOT NULL,
    sequenced_at TEXT NOT NULL
  )`.execute(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('repo_seq').execute()
  await db.schema.dropTable('record').execute()
  await db.schema.dropTable('repo_block').execute()
  await db.schema.dropTable('repo_root').execute()
}
