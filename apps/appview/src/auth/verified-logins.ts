// App-password sign-ins that the user's PDS accepted, remembered so that the token requests
// of later pushes and pulls do not each cost a createSession (whose password hashing is
// slow by design: about 0.35 s on a PDS here).
//
// An entry is found only by the exact username and password that were checked: its key is
// an HMAC of both under a random key of this process (the password itself is never kept,
// and the keys mean nothing outside this process). Refusals are never remembered: a wrong
// password goes to the PDS every time, and a right one is not locked out by an earlier
// wrong one.
//
// For `recheckMs` after the PDS accepted it (the several token requests of one push), the
// pair is let in as it is. After that it is let in again only once the PDS confirms the
// session that sign-in stored, by refreshing it: revoking an app password revokes its
// sessions, so a revoked one stops working after at most `recheckMs`, as with a new
// createSession, at the cost of a refresh. An entry lasts at most `maxAgeMs`, never past
// that session's refresh token, and goes as soon as the session ends (refused refresh,
// unreadable row, forgotten user).
import { createHmac, randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'

export interface VerifiedLoginsOptions {
  /** How long a sign-in is let in without asking the PDS; default 5 seconds. */
  recheckMs?: number
  /** How long a sign-in is remembered at most; default 24 hours. */
  maxAgeMs?: number
  /** Most sign-ins remembered at once; the oldest go first. Default 10 000. */
  maxEntries?: number
  now?: () => number
}

/** A remembered sign-in: its DID and the stored session it created. */
export interface VerifiedLogin {
  did: string
  sessionId: string
  /** Whether it was confirmed by the PDS within the last `recheckMs`. */
  fresh: boolean
}

interface Entry {
  did: string
  sessionId: string
  recheckAt: number
  expiresAt: number
}

const DEFAULT_RECHECK_MS = 5_000
const DEFAULT_MAX_AGE_MS = 24 * 60 * 60_000
const DEFAULT_MAX_ENTRIES = 10_000

export class VerifiedLogins {
  readonly #key = randomBytes(32)
  readonly #entries = new Map<string, Entry>()
  readonly #recheckMs: number
  readonly #maxAgeMs: number
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(options: VerifiedLoginsOptions = {}) {
    this.#recheckMs = options.recheckMs ?? DEFAULT_RECHECK_MS
    this.#maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES
    this.#now = options.now ?? Date.now
  }

  /** The key of a username and password (what pending checks of the same pair share). */
  keyOf(username: string, password: string): string {
    // Length-prefixed, so that no other split of the same characters gives the same input.
    return createHmac('sha256', this.#key)
      .update(`${Buffer.byteLength(username)}:${username}`)
      .update(password)
      .digest('base64url')
  }

  /** The sign-in of this exact pair, if it is remembered. */
  find(key: string): VerifiedLogin | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    const now = this.#now()
    if (entry.expiresAt <= now) {
      this.#entries.delete(key)
      return undefined
    }
    return { did: entry.did, sessionId: entry.sessionId, fresh: now < entry.recheckAt }
  }

  /**
   * Remembers a sign-in the PDS accepted; `sessionId` and `refreshJwt` are those of the
   * session it stored, whose refresh token's expiry bounds the entry.
   */
  remember(key: string, did: string, sessionId: string, refreshJwt: string): void {
    const now = this.#now()
    let expiresAt = now + this.#maxAgeMs
    const refreshExp = expiryMs(refreshJwt)
    if (refreshExp !== undefined) expiresAt = Math.min(expiresAt, refreshExp)
    if (expiresAt <= now) return
    this.#entries.delete(key)
    this.#entries.set(key, { did, sessionId, recheckAt: now + this.#recheckMs, expiresAt })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#entries.delete(oldest)
    }
  }

  /** The PDS confirmed the sign-in's session again: it is fresh for another `recheckMs`. */
  confirmed(key: string): void {
    const entry = this.#entries.get(key)
    if (entry) entry.recheckAt = this.#now() + this.#recheckMs
  }

  forget(key: string): void {
    this.#entries.delete(key)
  }

  /** Forgets every sign-in of the DID (its stored session ended). */
  forgetDid(did: string): void {
    for (const [key, entry] of this.#entries) {
      if (entry.did === did) this.#entries.delete(key)
    }
  }

  get size(): number {
    return this.#entries.size
  }
}

/** A JWT's `exp` in milliseconds; undefined when it is not a JWT or has none. */
function expiryMs(jwt: string): number | undefined {
  try {
    const { exp } = decodeJwt(jwt)
    return typeof exp === 'number' ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}
