// The oauth_state and oauth_session tables: ATProto OAuth authorizations in progress and
// users' OAuth sessions, stored sealed (the seal is the caller's; this module sees bytes).
import type { AppViewDatabase } from '../db/index.ts'

/** An authorization not finished within this long is abandoned. */
export const OAUTH_STATE_LIFETIME_MS = 3_600_000

export class OAuthStore {
  readonly #db: AppViewDatabase['db']

  constructor(db: AppViewDatabase) {
    this.#db = db.db
  }

  /** A pending authorization's sealed state; null when unknown or abandoned. */
  async state(key: string, now: number): Promise<Uint8Array | null> {
    const row = await this.#db
      .selectFrom('oauth_state')
      .select(['sealed', 'created_at'])
      .where('key', '=', key)
      .executeTakeFirst()
    if (!row || Number(row.created_at) + OAUTH_STATE_LIFETIME_MS < now) return null
    return row.sealed
  }

  /** Stores a pending authorization (dropping abandoned ones). */
  async setState(key: string, sealed: Uint8Array, now: number): Promise<void> {
    await this.#db
      .deleteFrom('oauth_state')
      .where('created_at', '<', now - OAUTH_STATE_LIFETIME_MS)
      .execute()
    await this.#db
      .insertInto('oauth_state')
      .values({ key, sealed, created_at: now })
      .onConflict((c) => c.column('key').doUpdateSet({ sealed }))
      .execute()
  }

  async deleteState(key: string): Promise<void> {
    await this.#db.deleteFrom('oauth_state').where('key', '=', key).execute()
  }

  async session(did: string): Promise<Uint8Array | null> {
    const row = await this.#db
      .selectFrom('oauth_session')
      .select('sealed')
      .where('did', '=', did)
      .executeTakeFirst()
    return row?.sealed ?? null
  }

  async setSession(did: string, sealed: Uint8Array, scope: string, now: number): Promise<void> {
    await this.#db
      .insertInto('oauth_session')
      .values({ did, sealed, requested_scope: scope, updated_at: now })
      .onConflict((c) => c.column('did').doUpdateSet({ sealed, updated_at: now }))
      .execute()
  }

  async hasSession(did: string): Promise<boolean> {
    const row = await this.#db
      .selectFrom('oauth_session')
      .select('did')
      .where('did', '=', did)
      .executeTakeFirst()
    return row !== undefined
  }

  async deleteSession(did: string): Promise<void> {
    await this.#db.deleteFrom('oauth_session').where('did', '=', did).execute()
  }

  /** Drops sessions begun with another scope than `scope`; how many. */
  async dropOtherScopes(scope: string): Promise<number> {
    const result = await this.#db
      .deleteFrom('oauth_session')
      .where('requested_scope', '!=', scope)
      .executeTakeFirst()
    return Number(result.numDeletedRows)
  }
}
