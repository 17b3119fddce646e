import { createOAuthTables, dropOAuthTables } from '@atcr/core/oauth'
import type { Kysely } from 'kysely'

/**
 * The admin pages' sign-in: ATProto OAuth authorizations in progress and sessions (sealed),
 * and signed-in browsers (cookie ids stored as hashes), as @atcr/core/oauth keeps them.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await createOAuthTables(db)
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await dropOAuthTables(db)
}
