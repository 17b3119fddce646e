import { randomBytes } from 'node:crypto'

/** What signs a token: a K256 or P256 keypair from @atproto/crypto. */
export interface JwtSigner {
  jwtAlg: string
  sign(message: Uint8Array): Promise<Uint8Array>
}

export interface MintServiceAuthTokenOptions {
  /** The DID the token speaks for; its document's `#atproto` key must be `keypair`. */
  iss: string
  /** The DID (or `did#service`) of the service that will receive the token. */
  aud: string
  /** The one XRPC method (NSID) the token is good for; omit for any method. */
  lxm?: string
  keypair: JwtSigner
  /** Lifetime; default 60 s. */
  expiresInSeconds?: number
  /** Issue time in Unix seconds; default now. */
  issuedAt?: number
}

const MAX_LIFETIME_SECONDS = 60 * 60

/**
 * Mints an atproto service-auth JWT (`{typ: 'JWT', alg}` over `{iat, iss, aud, exp, lxm,
 * jti}`, signed with the issuer's `#atproto` key): the same token a PDS hands out from
 * com.atproto.server.getServiceAuth, for DIDs whose key we hold (the AppView, a hold).
 */
export async function mintServiceAuthToken(options: MintServiceAuthTokenOptions): Promise<string> {
  const lifetime = options.expiresInSeconds ?? 60
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_LIFETIME_SECONDS) {
    throw new RangeError(`expiresInSeconds must be an integer in 1..${MAX_LIFETIME_SECONDS}`)
  }
  const iat = options.issuedAt ?? Math.floor(Date.now() / 1000)
  const header = { typ: 'JWT', alg: options.keypair.jwtAlg }
  const payload = {
    iat,
    iss: options.iss,
    aud: options.aud,
    exp: iat + lifetime,
    ...(options.lxm === undefined ? {} : { lxm: options.lxm }),
    jti: randomBytes(16).toString('hex'),
  }
  const signingInput = `${base64UrlJson(header)}.${base64UrlJson(payload)}`
  const signature = await options.keypair.sign(Buffer.from(signingInput, 'utf8'))
  return `${signingInput}.${Buffer.from(signature).toString('base64url')}`
}

function base64UrlJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url')
}
