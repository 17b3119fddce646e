// App-password sign-ins that the user's PDS accepted, remembered for a few minutes, so that
// the several /auth/token requests of one push or pull cost one createSession, not one each.
//
// An entry is found only by the exact username and password that were checked: its key is
// an HMAC of both under a random key of this process (the password itself is never kept,
// and the keys mean nothing outside this process). Refusals are never remembered: a wrong
// password goes to the PDS every time, and a right one is not locked out by an earlier
// wrong one. An entry lasts at most `ttlMs`, never past the refresh token of the session
// the sign-in stored, and goes as soon as that session ends (refused refresh, unreadable
// row, forgotten user).
import { createHmac, randomBytes } from 'node:crypto'
import { decodeJwt } from 'jose'

export interface VerifiedLoginsOptions {
  /** How long a sign-in is remembered; default 5 minutes. */
  ttlMs?: number
  /** Most sign-ins remembered at once; the oldest go first. Default 10 000. */
  maxEntries?: number
  now?: () => number
}

interface Entry {
  did: string
  expiresAt: number
}

const DEFAULT_TTL_MS = 5 * 60_000
const DEFAULT_MAX_ENTRIES = 10_000

export class VerifiedLogins {
  readonly #key = randomBytes(32)
  readonly #entries = new Map<string, Entry>()
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(options: VerifiedLoginsOptions = {}) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS
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

  /** The DID this exact pair signed in as, if it did so recently. */
  find(key: string): string | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt <= this.#now()) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.did
  }

  /**
   * Remembers a sign-in the PDS accepted; `refreshJwt` is the stored session's refresh
   * token, whose expiry bounds the entry.
   */
  remember(key: string, did: string, refreshJwt: string): void {
    const now = this.#now()
    let expiresAt = now + this.#ttlMs
    const refreshExp = expiryMs(refreshJwt)
    if (refreshExp !== undefined) expiresAt = Math.min(expiresAt, refreshExp)
    if (expiresAt <= now) return
    this.#entries.delete(key)
    this.#entries.set(key, { did, expiresAt })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#entries.delete(oldest)
    }
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
