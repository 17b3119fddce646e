import { bytesType } from '@atcr/core/database'
import type { Kysely } from 'kysely'

/**
 * The admin pages' sign-in: ATProto OAuth authorizations in progress and sessions (sealed),
 * and signed-in browsers (cookie ids stored as hashes), as @atcr/core/oauth keeps them.
 * Times are Unix milliseconds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('oauth_state')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('sealed', bytesType(db), (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema
    .createTable('oauth_session')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('sealed', bytesType(db), (c) => c.notNull())
    .addColumn('requested_scope', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema
    .createTable('web_session')
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('handle', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('web_session_did').on('web_session').column('did').execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['web_session', 'oauth_session', 'oauth_state']) {
    await db.schema.dropTable(table).execute()
  }
}
