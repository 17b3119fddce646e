// Registry tokens: the JWTs /auth/token issues and /v2 requests present (distribution token
// spec): ES256, `iss` = `aud` = the service name, `sub` = the caller's DID (absent when
// anonymous), and an `access` claim listing what the bearer may do.
import { randomUUID } from 'node:crypto'
import { type CacheCounter, TtlCache } from '@atcr/core/identity'
import type { TokenSigningKey } from '@atcr/core/oauth'
import { fromAccessEntries, type TokenScope, toAccessEntries } from '@atcr/core/oci'
import { jwtVerify, SignJWT } from 'jose'

/** How far apart our clock and a token's times may be (we are both ends; a little slack). */
const CLOCK_SKEW_SECONDS = 10
const MAX_TOKEN_LENGTH = 16 * 1024
/**
 * Tokens remembered once verified: a client sends its token with every request (a push
 * of 200 layers, about a thousand), and an ES256 verification costs about 0.4 ms of CPU.
 */
const VERIFIED_TOKENS = 1000

export interface IssuedToken {
  token: string
  /** Seconds the token is valid for. */
  expiresIn: number
  issuedAt: Date
}

export interface VerifiedToken {
  did: string | null
  access: TokenScope[]
}

export class InvalidRegistryTokenError extends Error {
  override readonly name = 'InvalidRegistryTokenError'
}

export interface RegistryTokenOptions {
  key: TokenSigningKey
  service: string
  /** Lifetime of issued tokens, seconds. */
  lifetime: number
  /** Told whether a token was found already verified. */
  verifiedCounter?: CacheCounter
  now?: () => number
}

interface Verified {
  token: VerifiedToken
  /** Milliseconds since the epoch after which the token is refused. */
  refuseAfter: number
}

export class RegistryTokens {
  readonly service: string
  readonly lifetime: number
  private readonly key: TokenSigningKey
  private readonly now: () => number
  /** Keyed by the whole token: only a token whose signature verified is ever stored. */
  private readonly verified: TtlCache<Verified>

  constructor(options: RegistryTokenOptions) {
    this.key = options.key
    this.service = options.service
    this.lifetime = options.lifetime
    this.now = options.now ?? Date.now
    this.verified = new TtlCache<Verified>(
      {
        ttlMs: (options.lifetime + CLOCK_SKEW_SECONDS) * 1000,
        maxEntries: VERIFIED_TOKENS,
        ...(options.verifiedCounter ? { counter: options.verifiedCounter } : {}),
      },
      this.now,
    )
  }

  /** Signs a token for `did` (null: anonymous) granting `access`. */
  async issue(
    did: string | null,
    access: readonly TokenScope[],
    now = new Date(),
  ): Promise<IssuedToken> {
    const iat = Math.floor(now.getTime() / 1000)
    const jwt = new SignJWT({ access: toAccessEntries(access) })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: this.key.kid })
      .setIssuer(this.service)
      .setAudience(this.service)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + this.lifetime)
      .setJti(randomUUID())
    if (did !== null) jwt.setSubject(did)
    return {
      token: await jwt.sign(this.key.privateKey),
      expiresIn: this.lifetime,
      issuedAt: new Date(iat * 1000),
    }
  }

  /** Checks signature, issuer, audience and times; throws InvalidRegistryTokenError. */
  async verify(token: string): Promise<VerifiedToken> {
    if (token.length > MAX_TOKEN_LENGTH) throw new InvalidRegistryTokenError('token too long')
    const known = this.verified.get(token)
    if (known) {
      if (this.now() <= known.refuseAfter) return known.token
      this.verified.delete(token)
    }
    let payload: Record<string, unknown>
    try {
      const result = await jwtVerify(token, this.key.publicKey, {
        algorithms: ['ES256'],
        issuer: this.service,
        audience: this.service,
        clockTolerance: CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp', 'iat'],
        currentDate: new Date(this.now()),
      })
      payload = result.payload
    } catch (cause) {
      throw new InvalidRegistryTokenError((cause as Error).message, { cause })
    }
    const { sub } = payload
    if (sub !== undefined && (typeof sub !== 'string' || !sub.startsWith('did:'))) {
      throw new InvalidRegistryTokenError('sub is not a DID')
    }
    let access: TokenScope[]
    try {
      access = fromAccessEntries(payload.access)
    } catch (cause) {
      throw new InvalidRegistryTokenError('malformed access claim', { cause })
    }
    const verified = { did: sub ?? null, access }
    const refuseAfter = ((payload.exp as number) + CLOCK_SKEW_SECONDS) * 1000
    this.verified.set(token, { token: verified, refuseAfter })
    return verified
  }
}
