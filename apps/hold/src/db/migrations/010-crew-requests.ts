import type { Kysely } from 'kysely'

/**
 * Crew requests waiting for the captain: a requestCrew refused because the hold does not
 * admit everyone (allowAllCrew off) is kept here until an admin approves or denies it.
 * Not a record of the repo: a request is private until granted. Times are Unix milliseconds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('crew_request')
    .addColumn('did', 'text', (c) => c.primaryKey())
    .addColumn('role', 'text', (c) => c.notNull())
    // JSON array of permission strings.
    .addColumn('permissions', 'text', (c) => c.notNull())
    .addColumn('requested_at', 'integer', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('crew_request').execute()
}
