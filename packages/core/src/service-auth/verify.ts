import { createHash } from 'node:crypto'
import { isAtprotoDid } from '@atproto/did'
import { cryptoVerifySignatureWithKey } from '@atproto/xrpc-server'
import { type CacheCounter, TtlCache } from '../identity/cache.ts'
import { IdentityError } from '../identity/errors.ts'
import { SsrfBlockedError } from '../identity/ssrf.ts'
import {
  BadJwtAudienceError,
  BadJwtError,
  BadJwtIatError,
  BadJwtIssuerError,
  BadJwtLexiconMethodError,
  BadJwtSignatureError,
  BadJwtTypeError,
  IssuerUnavailableError,
  JwtExpiredError,
} from './errors.ts'

/** Resolves a DID's `#atproto` key (an `IdentityResolver` is one). */
export interface SigningKeyResolver {
  resolveSigningKey(did: string, options?: { forceRefresh?: boolean }): Promise<string>
}

export interface VerifyServiceAuthOptions {
  /** The DID(s) this service answers to; the token's `aud` must be one of them, exactly. */
  audience: string | readonly string[]
  /** The XRPC method being called, or null to accept a token for any method. */
  lxm: string | null
  resolver: SigningKeyResolver
  /** Tolerance for clocks that disagree, applied to `exp` and `iat`; default 30, max 300. */
  clockSkewSeconds?: number
  /**
   * Signatures already checked: a caller reuses its token until it expires, and the
   * signature check is most of a verification's cost. Claims are checked every time.
   */
  verifiedSignatures?: VerifiedSignatures
}

/**
 * Tokens whose signature matched a key, remembered (bounded, for a few minutes) under a
 * hash of the token and the key: a token is taken on trust again only while its issuer's
 * key is the one that signed it.
 */
export class VerifiedSignatures {
  readonly #seen: TtlCache<true>

  constructor(options: { maxEntries?: number; ttlMs?: number; counter?: CacheCounter } = {}) {
    this.#seen = new TtlCache({
      maxEntries: options.maxEntries ?? 10_000,
      ttlMs: options.ttlMs ?? 5 * 60_000,
      counter: options.counter,
    })
  }

  has(token: string, key: string): boolean {
    return this.#seen.get(signatureKey(token, key)) === true
  }

  add(token: string, key: string): void {
    this.#seen.set(signatureKey(token, key), true)
  }
}

function signatureKey(token: string, key: string): string {
  return createHash('sha256').update(key).update('\n').update(token).digest('base64url')
}

export interface VerifiedServiceAuth {
  iss: string
  aud: string
  lxm: string | undefined
  exp: number
  iat: number | undefined
  jti: string | undefined
}

const MAX_TOKEN_LENGTH = 8192
const MAX_CLOCK_SKEW_SECONDS = 300
const BASE64URL = /^[A-Za-z0-9_-]+$/
const SUPPORTED_ALGS = new Set(['ES256K', 'ES256'])
// Service tokens are plain JWTs; these are other kinds of atproto/OAuth tokens.
const FOREIGN_TYPES = new Set(['at+jwt', 'refresh+jwt', 'dpop+jwt'])

/**
 * Verifies an atproto service-auth JWT: well-formed, issued by a did:plc/did:web, not
 * expired and not issued in the future (both within the clock skew), for one of our
 * audiences and for the expected method, and signed by the issuer's current `#atproto`
 * key. The key is resolved from cache first; when the signature does not match, it is
 * resolved once more, fresh, in case the issuer rotated it.
 *
 * The signature check is @atproto/xrpc-server's (`cryptoVerifySignatureWithKey`, as the
 * reference PDS checks). Its `verifyJwt` is not used for the rest, for what it lacks: it
 * refuses a token the moment `exp` passes (no clock skew) and never looks at `iat`, takes
 * one audience, puts no bound on the token, lets a malformed part escape as a bare
 * SyntaxError, and cannot skip the signature of a token already checked (see
 * `VerifiedSignatures`); and it accepts `did#service` issuers, which we refuse.
 */
export async function verifyServiceAuthToken(
  token: string,
  options: VerifyServiceAuthOptions,
): Promise<VerifiedServiceAuth> {
  const skew = options.clockSkewSeconds ?? 30
  if (!(skew >= 0 && skew <= MAX_CLOCK_SKEW_SECONDS)) {
    throw new RangeError(`clockSkewSeconds must be within 0..${MAX_CLOCK_SKEW_SECONDS}`)
  }
  const audiences = typeof options.audience === 'string' ? [options.audience] : options.audience
  if (audiences.length === 0) throw new RangeError('audience must name at least one DID')

  if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) {
    throw new BadJwtError('token is not a JWT of acceptable size')
  }
  const parts = token.split('.')
  if (parts.length !== 3 || !parts.every((part) => BASE64URL.test(part))) {
    throw new BadJwtError('token is not three base64url parts')
  }
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string]
  const header = decodeJson(headerPart, 'header')
  const payload = decodeJson(payloadPart, 'payload')

  const { alg, typ } = header
  if (typeof alg !== 'string' || !SUPPORTED_ALGS.has(alg)) {
    throw new BadJwtError(`unsupported alg ${JSON.stringify(alg)}`)
  }
  if (typ !== undefined && typeof typ !== 'string') throw new BadJwtError('typ is not a string')
  if (typeof typ === 'string' && FOREIGN_TYPES.has(typ.toLowerCase())) {
    throw new BadJwtTypeError(`a ${typ} token is not a service token`)
  }

  const { iss, aud, exp, iat, lxm, jti } = payload
  if (typeof iss !== 'string' || typeof aud !== 'string' || !isSeconds(exp)) {
    throw new BadJwtError('iss, aud and exp are required')
  }
  if ((iat !== undefined && !isSeconds(iat)) || (lxm !== undefined && typeof lxm !== 'string')) {
    throw new BadJwtError('iat or lxm has the wrong type')
  }
  if (jti !== undefined && typeof jti !== 'string') throw new BadJwtError('jti is not a string')
  if (!isAtprotoDid(iss)) throw new BadJwtIssuerError(`iss ${JSON.stringify(iss)} is not a DID`)

  const now = Date.now() / 1000
  if (now > exp + skew) throw new JwtExpiredError('token expired')
  if (iat !== undefined && iat > now + skew) {
    throw new BadJwtIatError('token is issued in the future')
  }
  if (!audiences.includes(aud)) {
    throw new BadJwtAudienceError(`token audience ${aud} is not this service`)
  }
  if (options.lxm !== null && lxm !== options.lxm) {
    throw new BadJwtLexiconMethodError(
      lxm === undefined
        ? `token has no lxm; this call needs ${options.lxm}`
        : `token is for ${lxm}, not ${options.lxm}`,
    )
  }

  const message = Buffer.from(`${headerPart}.${payloadPart}`, 'utf8')
  const signature = Buffer.from(signaturePart, 'base64url')
  const verified = options.verifiedSignatures
  let key = await issuerKey(options.resolver, iss, false)
  if (verified?.has(token, key)) return { iss, aud, lxm, exp, iat, jti }
  if (!(await signatureMatches(key, message, signature, alg))) {
    const freshKey = await issuerKey(options.resolver, iss, true)
    if (freshKey === key || !(await signatureMatches(freshKey, message, signature, alg))) {
      throw new BadJwtSignatureError(`token signature does not match the key of ${iss}`)
    }
    key = freshKey
  }
  verified?.add(token, key)
  return { iss, aud, lxm, exp, iat, jti }
}

function decodeJson(part: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch (cause) {
    throw new BadJwtError(`token ${what} is not JSON`, { cause })
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadJwtError(`token ${what} is not a JSON object`)
  }
  return value as Record<string, unknown>
}

function isSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

async function issuerKey(resolver: SigningKeyResolver, iss: string, forceRefresh: boolean) {
  try {
    return await resolver.resolveSigningKey(iss, { forceRefresh })
  } catch (error) {
    if (error instanceof IdentityError) {
      if (error.code === 'IdentityUnavailable' || error.code === 'PlcRequestFailed') {
        throw new IssuerUnavailableError(`could not resolve issuer ${iss}`, { cause: error })
      }
      throw new BadJwtIssuerError(`issuer ${iss} cannot vouch for this token: ${error.message}`, {
        cause: error,
      })
    }
    if (error instanceof SsrfBlockedError) {
      throw new BadJwtIssuerError(`issuer ${iss} is not reachable safely`, { cause: error })
    }
    throw error
  }
}

async function signatureMatches(
  key: string,
  message: Uint8Array,
  signature: Uint8Array,
  alg: string,
): Promise<boolean> {
  try {
    // Like the atproto PDS: a high-S signature is accepted (it is no less authentic).
    return await cryptoVerifySignatureWithKey(key, message, signature, alg)
  } catch {
    // The key is of another algorithm than the header claims, or unreadable.
    return false
  }
}
