import type { Kysely } from 'kysely'

/**
 * What each repository holds, as CNCF Distribution keeps repository links: a manifest or
 * blob is served under a repository only while linked there. Made by pushes, uploads and
 * mounts; `linked = 0` remembers a delete (so records that still name the repository do not
 * bring the content back). Rows are this AppView's own knowledge; what is missing is
 * rebuilt from the owner's records (see registry/content.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('repository_manifest')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('linked', 'integer', (c) => c.notNull())
    // The digest its io.atcr.manifest record is keyed by, when the client used another
    // algorithm (sha512 manifests are recorded under their sha256).
    .addColumn('record_digest', 'text')
    // The manifest's subject digest, for the repository's referrers.
    .addColumn('subject', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('repository_manifest_pk', ['did', 'repository', 'digest'])
    .execute()
  await db.schema
    .createIndex('repository_manifest_subject')
    .on('repository_manifest')
    .columns(['did', 'repository', 'subject'])
    .execute()
  await db.schema
    .createTable('repository_blob')
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('repository', 'text', (c) => c.notNull())
    .addColumn('digest', 'text', (c) => c.notNull())
    .addColumn('linked', 'integer', (c) => c.notNull())
    // The hold the blob was stored on when it was linked (null: unknown, ask the holds of
    // the repository's manifests).
    .addColumn('hold_did', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('repository_blob_pk', ['did', 'repository', 'digest'])
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('repository_blob').execute()
  await db.schema.dropTable('repository_manifest').execute()
}
