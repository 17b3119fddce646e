// Signed-in browsers: the cookie carries a random id, the database only its SHA-256, so a
// copy of the database signs nobody in.
import { createHash, randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { OAuthDatabase, OAuthTables } from './store.ts'

export interface WebUser {
  did: string
  handle: string | null
}

export class WebSessions {
  readonly #db: Kysely<OAuthTables>
  readonly #lifetimeMs: number
  readonly #now: () => number

  constructor(database: OAuthDatabase, lifetimeMs: number, now: () => number) {
    this.#db = database.db
    this.#lifetimeMs = lifetimeMs
    this.#now = now
  }

  get lifetimeMs(): number {
    return this.#lifetimeMs
  }

  /** A new session for the user; returns the cookie value. */
  async create(user: WebUser): Promise<string> {
    const id = randomBytes(32).toString('base64url')
    const now = this.#now()
    await this.#db.deleteFrom('web_session').where('expires_at', '<', now).execute()
    await this.#db
      .insertInto('web_session')
      .values({
        id_hash: hash(id),
        did: user.did,
        handle: user.handle,
        created_at: now,
        expires_at: now + this.#lifetimeMs,
      })
      .execute()
    return id
  }

  async find(id: string | undefined): Promise<WebUser | null> {
    if (!id) return null
    const row = await this.#db
      .selectFrom('web_session')
      .select(['did', 'handle', 'expires_at'])
      .where('id_hash', '=', hash(id))
      .executeTakeFirst()
    if (!row || Number(row.expires_at) <= this.#now()) return null
    return { did: row.did, handle: row.handle }
  }

  async delete(id: string | undefined): Promise<void> {
    if (!id) return
    await this.#db.deleteFrom('web_session').where('id_hash', '=', hash(id)).execute()
  }
}

function hash(id: string): string {
  return createHash('sha256').update(id).digest('hex')
}
