import type { Keypair } from '@atproto/crypto'
import { createServiceJwt } from '@atproto/xrpc-server'

export interface MintServiceAuthTokenOptions {
  /** The DID the token speaks for; its document's `#atproto` key must be `keypair`. */
  iss: string
  /** The DID (or `did#service`) of the service that will receive the token. */
  aud: string
  /** The one XRPC method (NSID) the token is good for; omit for any method. */
  lxm?: string
  keypair: Keypair
  /** Lifetime; default 60 s. */
  expiresInSeconds?: number
  /** Issue time in Unix seconds; default now. */
  issuedAt?: number
}

const MAX_LIFETIME_SECONDS = 60 * 60

/**
 * Mints an atproto service-auth JWT with @atproto/xrpc-server's `createServiceJwt` (the
 * token a PDS hands out from com.atproto.server.getServiceAuth), for DIDs whose key we
 * hold (the AppView, a hold). Added here: a bounded lifetime.
 */
export async function mintServiceAuthToken(options: MintServiceAuthTokenOptions): Promise<string> {
  const lifetime = options.expiresInSeconds ?? 60
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > MAX_LIFETIME_SECONDS) {
    throw new RangeError(`expiresInSeconds must be an integer in 1..${MAX_LIFETIME_SECONDS}`)
  }
  const iat = options.issuedAt ?? Math.floor(Date.now() / 1000)
  return createServiceJwt({
    iss: options.iss,
    aud: options.aud,
    iat,
    exp: iat + lifetime,
    lxm: options.lxm ?? null,
    keypair: options.keypair,
  })
}
