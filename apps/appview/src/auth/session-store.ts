// The users' PDS sessions at rest: one row per DID in `pds_session`, the session sealed
// with AES-256-GCM under the AppView's session key. The DID is bound into each seal as
// associated data, so a sealed session copied onto another user's row does not open.
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto'
import type { AppViewDatabase } from '../db/index.ts'

/** What the AppView keeps of a PDS session (tokens included; never log it). */
export interface StoredSession {
  did: string
  handle: string
  /** The PDS the session belongs to, e.g. `https://pds.example.com`. */
  pdsEndpoint: string
  accessJwt: string
  refreshJwt: string
  active: boolean
  status?: string
}

export interface SessionRow {
  session: StoredSession
  /** Identifies this login; see {@link SessionStore.update}. */
  sessionId: string
  profileCheckedAt: string | null
}

/** A row whose seal does not open (another key, or tampered with). */
export class SessionUnsealError extends Error {
  override readonly name = 'SessionUnsealError'
}

const VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16

export class SessionStore {
  private readonly db: AppViewDatabase['db']
  private readonly key: Buffer

  constructor(db: AppViewDatabase, key: Buffer) {
    if (key.length !== 32) throw new RangeError('the session key must be 32 bytes')
    this.db = db.db
    this.key = key
  }

  /** Stores a new login for the DID, replacing any earlier one; returns its session id. */
  async save(session: StoredSession): Promise<string> {
    const sessionId = randomUUID()
    const now = new Date().toISOString()
    const sealed = this.seal(session)
    await this.db
      .insertInto('pds_session')
      .values({
        did: session.did,
        session_id: sessionId,
        sealed,
        profile_checked_at: null,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc.column('did').doUpdateSet({ session_id: sessionId, sealed, updated_at: now }),
      )
      .execute()
    return sessionId
  }

  /**
   * Replaces the tokens of login `sessionId` (after a refresh). Does nothing when the user
   * has logged in again meanwhile: the newer login wins. Returns whether it wrote.
   */
  async update(sessionId: string, session: StoredSession): Promise<boolean> {
    const result = await this.db
      .updateTable('pds_session')
      .set({ sealed: this.seal(session), updated_at: new Date().toISOString() })
      .where('did', '=', session.did)
      .where('session_id', '=', sessionId)
      .executeTakeFirst()
    return result.numUpdatedRows > 0n
  }

  /** The stored session; null when none. Throws SessionUnsealError when it cannot be opened. */
  async load(did: string): Promise<SessionRow | null> {
    const row = await this.db
      .selectFrom('pds_session')
      .selectAll()
      .where('did', '=', did)
      .executeTakeFirst()
    if (!row) return null
    return {
      session: this.unseal(did, row.sealed),
      sessionId: row.session_id,
      profileCheckedAt: row.profile_checked_at,
    }
  }

  /** Whether a session of the DID is stored (without opening it). */
  async exists(did: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('pds_session')
      .select('did')
      .where('did', '=', did)
      .executeTakeFirst()
    return row !== undefined
  }

  /** Deletes the DID's session (only login `sessionId` when given). */
  async delete(did: string, sessionId?: string): Promise<void> {
    let query = this.db.deleteFrom('pds_session').where('did', '=', did)
    if (sessionId !== undefined) query = query.where('session_id', '=', sessionId)
    await query.execute()
  }

  /** Whether the user's sailor profile was found or made since their session was first stored. */
  async isProfileChecked(did: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('pds_session')
      .select('profile_checked_at')
      .where('did', '=', did)
      .executeTakeFirst()
    return row?.profile_checked_at != null
  }

  async markProfileChecked(did: string): Promise<void> {
    await this.db
      .updateTable('pds_session')
      .set({ profile_checked_at: new Date().toISOString() })
      .where('did', '=', did)
      .execute()
  }

  private seal(session: StoredSession): Buffer {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(associatedData(session.did))
    const ciphertext = Buffer.concat([
      cipher.update(JSON.stringify(session), 'utf8'),
      cipher.final(),
    ])
    return Buffer.concat([Buffer.of(VERSION), iv, cipher.getAuthTag(), ciphertext])
  }

  private unseal(did: string, sealed: Uint8Array): StoredSession {
    const bytes = Buffer.from(sealed)
    if (bytes.length < 1 + IV_BYTES + TAG_BYTES || bytes[0] !== VERSION) {
      throw new SessionUnsealError(`stored session of ${did} has an unknown format`)
    }
    const iv = bytes.subarray(1, 1 + IV_BYTES)
    const tag = bytes.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES)
    const ciphertext = bytes.subarray(1 + IV_BYTES + TAG_BYTES)
    let json: string
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES })
      decipher.setAAD(associatedData(did))
      decipher.setAuthTag(tag)
      json = Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8')
    } catch (cause) {
      throw new SessionUnsealError(`stored session of ${did} does not open with this key`, {
        cause,
      })
    }
    const session = JSON.parse(json) as StoredSession
    if (session.did !== did) throw new SessionUnsealError(`stored session of ${did} is not theirs`)
    return session
  }
}

function associatedData(did: string): Buffer {
  return Buffer.from(`atcr pds_session v${VERSION} ${did}`, 'utf8')
}
