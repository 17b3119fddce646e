import type { Kysely } from 'kysely'

/**
 * The last health check of each hold this AppView pushes to (see holds/hold-health.ts),
 * shared by every instance on the database. Times are Unix milliseconds.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hold_health')
    .addColumn('hold_did', 'text', (c) => c.primaryKey())
    .addColumn('endpoint', 'text', (c) => c.notNull())
    // unknown (not checked yet) | up | down
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('latency_ms', 'integer')
    // Why the last check failed (null when it did not).
    .addColumn('error', 'text')
    .addColumn('checked_at', 'bigint', (c) => c.notNull())
    // When the status last changed.
    .addColumn('changed_at', 'bigint', (c) => c.notNull())
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('hold_health').execute()
}
