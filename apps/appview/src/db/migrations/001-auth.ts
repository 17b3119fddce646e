import { bytesType } from '@atcr/core/database'
import type { Kysely } from 'kysely'

/** The users' PDS sessions from token exchanges, sealed (AES-256-GCM) with the session key. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('pds_session')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('session_id', 'text', (c) => c.notNull())
    .addColumn('sealed', bytesType(db), (c) => c.notNull())
    .addColumn('profile_checked_at', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('pds_session').execute()
}
