// The device authorization flow (RFC 8628 shape) for the credential helper, and the
// devices it approves. A device secret is 32 random bytes; only its SHA-256 is stored (a
// slow hash adds nothing for a secret with that much entropy), so it is shown once and is
// checked against the database on every token request: a revoked device is refused at once.
import { createHash, randomBytes, randomInt, randomUUID } from 'node:crypto'
import { isUniqueViolation } from '@atcr/core/database'
import type { AppViewDatabase } from '../db/index.ts'
import type { DeviceSecretVerifier } from './credentials.ts'

/** Consonants only, without easily confused letters: no words, few misreadings. */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ'
export const DEVICE_SECRET_PREFIX = 'atcr_dev_'

export interface DeviceFlowOptions {
  db: AppViewDatabase
  /** Lifetime of a device code, in seconds. */
  codeLifetime: number
  /** Seconds a device waits between polls. */
  interval: number
  now: () => number
}

export interface StartedAuthorization {
  deviceCode: string
  userCode: string
  expiresIn: number
  interval: number
}

export interface PendingAuthorization {
  userCode: string
  clientName: string
  expiresAt: number
}

export type PollResult =
  | {
      error:
        | 'authorization_pending'
        | 'slow_down'
        | 'expired_token'
        | 'access_denied'
        | 'invalid_grant'
    }
  | { secret: string; did: string; handle: string | null }

export interface DeviceInfo {
  id: string
  name: string
  createdAt: number
  lastUsedAt: number | null
}

export class DeviceFlow implements DeviceSecretVerifier {
  readonly #db: AppViewDatabase['db']
  readonly #codeLifetimeMs: number
  readonly interval: number
  readonly #now: () => number

  constructor(options: DeviceFlowOptions) {
    this.#db = options.db.db
    this.#codeLifetimeMs = options.codeLifetime * 1000
    this.interval = options.interval
    this.#now = options.now
  }

  get codeLifetime(): number {
    return this.#codeLifetimeMs / 1000
  }

  async start(clientName: string): Promise<StartedAuthorization> {
    const now = this.#now()
    await this.#db
      .deleteFrom('device_authorization')
      .where('expires_at', '<', now - this.#codeLifetimeMs)
      .execute()
    const deviceCode = randomBytes(32).toString('base64url')
    for (let attempt = 0; ; attempt++) {
      const userCode = newUserCode()
      try {
        await this.#db
          .insertInto('device_authorization')
          .values({
            device_code_hash: sha256(deviceCode),
            user_code: userCode,
            client_name: clientName,
            status: 'pending',
            did: null,
            handle: null,
            last_poll_at: 0,
            created_at: now,
            expires_at: now + this.#codeLifetimeMs,
          })
          .execute()
        return { deviceCode, userCode, expiresIn: this.codeLifetime, interval: this.interval }
      } catch (error) {
        // A user code in use already (20^8 codes make this rare): draw another.
        if (attempt >= 5 || !isUniqueViolation(error)) throw error
      }
    }
  }

  /** The pending authorization a user code names, or null (unknown, expired, decided). */
  async pending(input: string): Promise<PendingAuthorization | null> {
    const userCode = normalizeUserCode(input)
    if (!userCode) return null
    const row = await this.#db
      .selectFrom('device_authorization')
      .select(['user_code', 'client_name', 'expires_at', 'status'])
      .where('user_code', '=', userCode)
      .executeTakeFirst()
    if (row?.status !== 'pending' || Number(row.expires_at) <= this.#now()) return null
    return {
      userCode: row.user_code,
      clientName: row.client_name,
      expiresAt: Number(row.expires_at),
    }
  }

  /** Approves or denies a pending authorization for the signed-in user; false if none. */
  async decide(
    input: string,
    user: { did: string; handle: string | null },
    approve: boolean,
  ): Promise<boolean> {
    const userCode = normalizeUserCode(input)
    if (!userCode) return false
    const result = await this.#db
      .updateTable('device_authorization')
      .set({ status: approve ? 'approved' : 'denied', did: user.did, handle: user.handle })
      .where('user_code', '=', userCode)
      .where('status', '=', 'pending')
      .where('expires_at', '>', this.#now())
      .executeTakeFirst()
    return result.numUpdatedRows > 0n
  }

  /** A device's poll: the RFC 8628 answer, or the new device secret (given once). */
  async poll(deviceCode: string): Promise<PollResult> {
    const codeHash = sha256(deviceCode)
    const now = this.#now()
    const row = await this.#db
      .selectFrom('device_authorization')
      .selectAll()
      .where('device_code_hash', '=', codeHash)
      .executeTakeFirst()
    if (!row || row.status === 'issued') return { error: 'invalid_grant' }
    if (Number(row.expires_at) <= now) return { error: 'expired_token' }
    if (row.status === 'denied') {
      await this.#db
        .deleteFrom('device_authorization')
        .where('device_code_hash', '=', codeHash)
        .execute()
      return { error: 'access_denied' }
    }
    if (row.status === 'pending') {
      const early = now - Number(row.last_poll_at) < this.interval * 1000
      await this.#db
        .updateTable('device_authorization')
        .set({ last_poll_at: now })
        .where('device_code_hash', '=', codeHash)
        .execute()
      return { error: early ? 'slow_down' : 'authorization_pending' }
    }
    // Approved: issue the secret exactly once (the status flips in the same statement).
    const claimed = await this.#db
      .updateTable('device_authorization')
      .set({ status: 'issued' })
      .where('device_code_hash', '=', codeHash)
      .where('status', '=', 'approved')
      .executeTakeFirst()
    if (claimed.numUpdatedRows === 0n || !row.did) return { error: 'invalid_grant' }
    const secret = `${DEVICE_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`
    await this.#db
      .insertInto('device')
      .values({
        id: randomUUID(),
        did: row.did,
        name: row.client_name,
        secret_hash: sha256(secret),
        created_at: now,
        last_used_at: null,
      })
      .execute()
    return { secret, did: row.did, handle: row.handle }
  }

  async verify(did: string, secret: string): Promise<boolean> {
    if (!secret.startsWith(DEVICE_SECRET_PREFIX)) return false
    const result = await this.#db
      .updateTable('device')
      .set({ last_used_at: this.#now() })
      .where('did', '=', did)
      .where('secret_hash', '=', sha256(secret))
      .executeTakeFirst()
    return result.numUpdatedRows > 0n
  }

  async list(did: string): Promise<DeviceInfo[]> {
    const rows = await this.#db
      .selectFrom('device')
      .select(['id', 'name', 'created_at', 'last_used_at'])
      .where('did', '=', did)
      .orderBy('created_at')
      .execute()
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      createdAt: Number(row.created_at),
      lastUsedAt: row.last_used_at === null ? null : Number(row.last_used_at),
    }))
  }

  /** Revokes one of the user's devices; false when it is not theirs or gone already. */
  async revoke(did: string, id: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('device')
      .where('did', '=', did)
      .where('id', '=', id)
      .executeTakeFirst()
    return result.numDeletedRows > 0n
  }
}

/** `BCDF-GHJK` from any spelling (lower case, no dash, spaces); null when it cannot be one. */
export function normalizeUserCode(input: string): string | null {
  const letters = input.toUpperCase().replace(/[^A-Z]/g, '')
  if (letters.length !== 8 || [...letters].some((c) => !USER_CODE_ALPHABET.includes(c))) {
    return null
  }
  return `${letters.slice(0, 4)}-${letters.slice(4)}`
}

function newUserCode(): string {
  let letters = ''
  for (let i = 0; i < 8; i++) letters += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)]
  return `${letters.slice(0, 4)}-${letters.slice(4)}`
}

function sha256(value: string): string {
  return createHash('sha256').update(value).digest('hex')
}
