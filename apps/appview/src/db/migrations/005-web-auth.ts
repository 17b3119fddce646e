import { createOAuthTables, dropOAuthTables } from '@atcr/core/oauth'
import type { Kysely } from 'kysely'

/**
 * ATProto OAuth (pending authorizations and sessions, sealed with the session key) and web
 * sign-in sessions (cookie ids stored as hashes), as @atcr/core/oauth keeps them; the
 * device flow: authorizations in progress and approved devices (secrets stored as hashes).
 * Times are Unix milliseconds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await createOAuthTables(db)
  await db.schema
    .createTable('device_authorization')
    .addColumn('device_code_hash', 'text', (c) => c.primaryKey())
    .addColumn('user_code', 'text', (c) => c.notNull().unique())
    .addColumn('client_name', 'text', (c) => c.notNull())
    // pending | approved | denied | issued
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('did', 'text')
    .addColumn('handle', 'text')
    .addColumn('last_poll_at', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute()
  await db.schema
    .createTable('device')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('did', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .execute()
  await db.schema.createIndex('device_did').on('device').column('did').execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['device', 'device_authorization']) {
    await db.schema.dropTable(table).execute()
  }
  await dropOAuthTables(db)
}
