// Who is calling: an atproto service-auth JWT in `Authorization: Bearer`, minted by the
// caller's PDS (or signed by the trusted AppView's own key), for this hold and this method.
import { ServiceAuthError, verifyServiceAuthToken } from '@atcr/core/service-auth'
import type { FastifyRequest } from 'fastify'
import type { HoldContext } from '../context.ts'
import { HOLD_SERVICE_ID } from '../identity.ts'
import { authRequired, XrpcError } from '../xrpc/error.ts'

/**
 * The caller of a hold method. `did` is null for anonymous requests. `trustedAppView` is
 * set when the token was issued by the hold's configured trusted AppView, calling as itself.
 */
export interface HoldCaller {
  did: string | null
  trustedAppView: boolean
}

export const ANONYMOUS: HoldCaller = Object.freeze({ did: null, trustedAppView: false })

/**
 * Authenticates a request for the method `lxm`. No Authorization header: anonymous (each
 * method decides whether that is enough). A Bearer token must be a valid service token
 * with `aud` = this hold's DID (or its `#atcr_hold` service) and `lxm` = the method;
 * anything else is a 401 naming the reason (`BadJwtSignature`, `JwtExpired`, ...).
 */
export async function authenticate(
  ctx: HoldContext,
  request: FastifyRequest,
  lxm: string,
): Promise<HoldCaller> {
  const header = request.headers.authorization
  if (header === undefined || header === '') return ANONYMOUS
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  if (!match?.[1]) {
    throw authRequired('Authorization must be a Bearer service token', 'InvalidToken')
  }
  const did = ctx.identity.did
  try {
    const verified = await verifyServiceAuthToken(match[1], {
      audience: [did, `${did}#${HOLD_SERVICE_ID}`],
      lxm,
      resolver: ctx.resolver,
      verifiedSignatures: ctx.verifiedSignatures,
    })
    const trusted = ctx.config.auth.trusted_appview_did
    return { did: verified.iss, trustedAppView: trusted !== null && verified.iss === trusted }
  } catch (err) {
    if (err instanceof ServiceAuthError) {
      // The issuer's identity could not be fetched: not the token's fault, worth a retry.
      if (err.code === 'IssuerUnavailable') throw new XrpcError(503, err.code, err.message)
      throw authRequired(err.message, err.code)
    }
    throw err
  }
}
