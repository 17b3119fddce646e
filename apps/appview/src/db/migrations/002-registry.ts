import { engineOf } from '@atcr/core/database'
import { type Kysely, sql } from 'kysely'

/**
 * Repositories pushed through this AppView, for `/v2/_catalog` until an index of the
 * network exists. One row per (owner DID, repository).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('registry_repository')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    // The image name the catalog lists: the client-safe DID spelling, `/`, the repository.
    // Ordered by code point on both engines (SQLite's default; PostgreSQL's follows the
    // database locale unless told), as the catalog's `last` pagination expects.
    .addColumn('name', 'text', (c) => {
      const column = c.notNull().unique()
      return engineOf(db) === 'postgres' ? column.modifyFront(sql`collate "C"`) : column
    })
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('registry_repository_pk', ['did', 'repository'])
    .execute()
  // The hold API's digest fields hold at most 128 characters (sha256 only): a sha512 blob
  // is stored on the hold under its sha256 digest, and found again through this table.
  await db.schema
    .createTable('registry_blob_alias')
    .addColumn('hold_did', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('stored_digest', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('registry_blob_alias_pk', ['hold_did', 'digest'])
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('registry_blob_alias').execute()
  await db.schema.dropTable('registry_repository').execute()
}
