import { bytesType } from '@atcr/core/database'
import type { Kysely } from 'kysely'

/**
 * ATProto OAuth (pending authorizations and sessions, sealed with the session key), web
 * sign-in sessions (cookie ids stored as hashes), and the device flow: authorizations in
 * progress and approved devices (secrets stored as hashes). Times are Unix milliseconds.
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
    // The scope this AppView asked for when the session began (sessions asking for other
    // scopes than the configured ones are dropped at start-up).
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
  for (const table of [
    'device',
    'device_authorization',
    'web_session',
    'oauth_session',
    'oauth_state',
  ]) {
    await db.schema.dropTable(table).execute()
  }
}
