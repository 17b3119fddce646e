import type { Kysely } from 'kysely'

/**
 * The network index (see ingest/): io.atcr.* records of every account the AppView hears of,
 * from the firehose, Jetstream, backfills and its own writes, and the consumer's cursor and
 * lease. Column names are a contract with the web UI (docs/appview.md, "The network index").
 * Times are Unix milliseconds unless named `created_at`/`last_*` (the records' ISO strings).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('index_account')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('handle', 'text')
    .addColumn('pds_endpoint', 'text')
    .addColumn('display_name', 'text')
    .addColumn('avatar_url', 'text')
    .addColumn('default_hold', 'text')
    .addColumn('auto_remove_untagged', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('oci_client', 'text')
    // When every io.atcr.* record of the account was last read from its PDS (null: never).
    .addColumn('backfilled_at', 'bigint')
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('index_account_handle').on('index_account').column('handle').execute()

  await db.schema
    .createTable('index_manifest')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('media_type', 'text', (c) => c.notNull())
    .addColumn('artifact_type', 'text')
    .addColumn('config_digest', 'text')
    .addColumn('subject_digest', 'text')
    .addColumn('size', 'bigint', (c) => c.notNull())
    .addColumn('platforms', 'text')
    .addColumn('description', 'text')
    .addColumn('hold_did', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('record', 'text', (c) => c.notNull())
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_manifest_pk', ['did', 'digest'])
    .execute()
  await db.schema
    .createIndex('index_manifest_created')
    .on('index_manifest')
    .column('created_at')
    .execute()
  await db.schema
    .createIndex('index_manifest_repository')
    .on('index_manifest')
    .columns(['did', 'repository', 'subject_digest'])
    .execute()

  await db.schema
    .createTable('index_tag')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_tag_pk', ['did', 'repository', 'tag'])
    .execute()
  await db.schema
    .createIndex('index_tag_recent')
    .on('index_tag')
    .columns(['did', 'repository', 'created_at'])
    .execute()

  await db.schema
    .createTable('index_repo_page')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('record', 'text', (c) => c.notNull())
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_repo_page_pk', ['did', 'repository'])
    .execute()

  await db.schema
    .createTable('index_star')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addColumn('subject_did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_star_pk', ['did', 'rkey'])
    .execute()
  await db.schema
    .createIndex('index_star_subject')
    .on('index_star')
    .columns(['subject_did', 'repository'])
    .execute()

  await db.schema
    .createTable('index_hold_captain')
    .addColumn('hold_did', 'text', (c) => c.primaryKey())
    .addColumn('owner_did', 'text', (c) => c.notNull())
    .addColumn('public', 'integer', (c) => c.notNull())
    .addColumn('allow_all_crew', 'integer', (c) => c.notNull())
    .addColumn('region', 'text')
    .addColumn('record', 'text', (c) => c.notNull())
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('index_hold_crew')
    .addColumn('hold_did', 'text', (c) => c.notNull())
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addColumn('member_did', 'text', (c) => c.notNull())
    .addColumn('role', 'text')
    .addColumn('permissions', 'text', (c) => c.notNull())
    .addColumn('tier', 'text')
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_hold_crew_pk', ['hold_did', 'rkey'])
    .execute()
  await db.schema
    .createIndex('index_hold_crew_member')
    .on('index_hold_crew')
    .column('member_did')
    .execute()

  await db.schema
    .createTable('index_repo_stats')
    .addColumn('hold_did', 'text', (c) => c.notNull())
    // The stats record's key, so that its delete finds the row.
    .addColumn('rkey', 'text', (c) => c.notNull())
    .addColumn('owner_did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('pull_count', 'bigint', (c) => c.notNull())
    .addColumn('push_count', 'bigint', (c) => c.notNull())
    .addColumn('last_pull', 'text')
    .addColumn('last_push', 'text')
    .addColumn('indexed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('index_repo_stats_pk', ['hold_did', 'owner_did', 'repository'])
    .execute()
  await db.schema
    .createIndex('index_repo_stats_rkey')
    .on('index_repo_stats')
    .columns(['hold_did', 'rkey'])
    .execute()

  await db.schema
    .createTable('ingest_cursor')
    .addColumn('source', 'text', (c) => c.primaryKey())
    .addColumn('cursor', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()

  await db.schema
    .createTable('ingest_lease')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'ingest_lease',
    'ingest_cursor',
    'index_repo_stats',
    'index_hold_crew',
    'index_hold_captain',
    'index_star',
    'index_repo_page',
    'index_tag',
    'index_manifest',
    'index_account',
  ]) {
    await db.schema.dropTable(table).execute()
  }
}
