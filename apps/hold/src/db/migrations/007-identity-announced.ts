import type { Kysely } from 'kysely'

/**
 * The identity (DID document as published) last announced on the firehose, so that the
 * hold sends an #identity event when it changes: a new key, endpoint or handle.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('identity_announced')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('document', 'text', (c) => c.notNull())
    .addColumn('announced_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('identity_announced').execute()
}
