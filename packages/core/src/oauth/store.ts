// The oauth_state and oauth_session tables: ATProto OAuth authorizations in progress and
// users' OAuth sessions, stored sealed (the seal is the caller's; this module sees bytes).
// Any service database holding these tables (AppView, hold admin) uses this one store.
import type { Kysely } from 'kysely'
import { bytesType } from '../database/index.ts'

/** An ATProto OAuth authorization in progress (PAR/PKCE state), sealed. */
export interface OAuthStateTable {
  key: string
  sealed: Uint8Array
  created_at: number
}

/** A user's ATProto OAuth session (tokens, DPoP key), sealed. */
export interface OAuthSessionTable {
  did: string
  sealed: Uint8Array
  requested_scope: string
  updated_at: number
}

/** A signed-in browser: the cookie holds the id, the table its SHA-256. */
export interface WebSessionTable {
  id_hash: string
  did: string
  handle: string | null
  created_at: number
  expires_at: number
}

/** The tables of OAuth sign-in and browser sessions, as each service's migrations make them. */
export interface OAuthTables {
  oauth_state: OAuthStateTable
  oauth_session: OAuthSessionTable
  web_session: WebSessionTable
}

/** A database with the OAuth tables (a service's own schema has more). */
export interface OAuthDatabase {
  db: Kysely<OAuthTables>
}

/** An authorization not finished within this long is abandoned. */
export const OAUTH_STATE_LIFETIME_MS = 3_600_000

export class OAuthStore {
  readonly #db: Kysely<OAuthTables>

  constructor(database: OAuthDatabase) {
    this.#db = database.db
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

/**
 * Makes the tables above, for a service's migration (the AppView's 005, the hold's 008).
 * Times are Unix milliseconds.
 */
export async function createOAuthTables(db: Kysely<unknown>): Promise<void> {
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
    // The scope the service asked for when the session began (sessions asking for other
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
}

export async function dropOAuthTables(db: Kysely<unknown>): Promise<void> {
  for (const table of ['web_session', 'oauth_session', 'oauth_state']) {
    await db.schema.dropTable(table).execute()
  }
}
