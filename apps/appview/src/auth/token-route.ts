// /auth/token: the Docker token-auth endpoint. GET with optional HTTP Basic credentials (the
// distribution token spec), or POST with the OAuth2 password grant (which containerd tries
// first). Without credentials the token allows pulls only.
//
// Abuse limits (@fastify/rate-limit): requests per client address and per account, and
// refused sign-ins per account and per address; past them the answer is 429
// TOOMANYREQUESTS with Retry-After, and the PDS is not asked. The scopes of one request
// are capped before any identity is looked up.
import {
  buildBasicChallenge,
  formatScopes,
  InvalidScopeError,
  OciError,
  parseScopes,
  type TokenScope,
} from '@atcr/core/oci'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type CredentialChecker, type Credentials, parseBasicAuthorization } from './credentials.ts'
import { grantScopes } from './grants.ts'
import type { RegistryTokens } from './registry-token.ts'

export interface TokenEndpoint {
  tokens: RegistryTokens
  checker: CredentialChecker
  /** Handle to DID for scope grants (failed lookups remembered briefly). */
  resolveHandle: (handle: string) => Promise<string>
  /** The realm of the Basic challenge sent with refused credentials. */
  basicRealm: string
  maxScopes: number
  limits: TokenLimits
}

export interface TokenLimits {
  /** Window of the request limits, in milliseconds. */
  windowMs: number
  perAddress: number
  perAccount: number
  failedSignIns: number
  failedSignInsPerAddress: number
  failedSignInWindowMs: number
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>

interface Limiters {
  account: Limiter
  failedByAccount: Limiter
  failedByAddress: Limiter
}

/** The account a token request names (lower-cased username), or null when it names none. */
function accountOf(request: FastifyRequest): string | null {
  let username: string | undefined
  if (request.body instanceof URLSearchParams) username = request.body.get('username') ?? undefined
  else username = parseBasicAuthorization(request.headers.authorization)?.username
  const account = username?.trim().toLowerCase()
  return account ? account : null
}

function tooManyRequests(seconds: number, message: string): OciError {
  return new OciError('TOOMANYREQUESTS', {
    message,
    headers: { 'Retry-After': String(Math.max(1, seconds)) },
  })
}

/** The 401 for refused credentials, with the Basic challenge that asks for others. */
export function credentialsRefused(basicRealm: string, message: string): OciError {
  return new OciError('UNAUTHORIZED', {
    message,
    headers: { 'WWW-Authenticate': buildBasicChallenge(basicRealm) },
  })
}

const FORM_BODY_LIMIT = 16 * 1024

export function registerTokenRoutes(app: FastifyInstance, endpoint: TokenEndpoint): void {
  const { limits } = endpoint
  const byAccount = (request: FastifyRequest) => `account:${accountOf(request)}`
  const limiters: Limiters = {
    account: app.createRateLimit({
      max: limits.perAccount,
      timeWindow: limits.windowMs,
      keyGenerator: byAccount,
    }),
    failedByAccount: app.createRateLimit({
      max: limits.failedSignIns,
      timeWindow: limits.failedSignInWindowMs,
      keyGenerator: byAccount,
    }),
    failedByAddress: app.createRateLimit({
      max: limits.failedSignInsPerAddress,
      timeWindow: limits.failedSignInWindowMs,
      keyGenerator: (request) => `address:${request.ip}`,
    }),
  }
  const routeConfig = {
    config: { rateLimit: { max: limits.perAddress, timeWindow: limits.windowMs } },
  }
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
    (_request, body, done) => done(null, new URLSearchParams(body as string)),
  )

  app.get('/auth/token', routeConfig, async (request, reply) => {
    const query = request.query as Record<string, string | string[] | undefined>
    const scopes = requestedScopes(query.scope, endpoint.maxScopes)
    const header = request.headers.authorization
    let credentials: Credentials | null = null
    if (header !== undefined) {
      credentials = parseBasicAuthorization(header)
      if (!credentials) {
        throw credentialsRefused(
          endpoint.basicRealm,
          'send the username and app password with HTTP Basic authentication',
        )
      }
    }
    const issued = await issue(endpoint, limiters, request, credentials, scopes)
    return send(reply, issued)
  })

  app.post('/auth/token', routeConfig, async (request: FastifyRequest, reply) => {
    if (!(request.body instanceof URLSearchParams)) {
      throw new OciError('UNSUPPORTED', {
        status: 400,
        message: 'send an application/x-www-form-urlencoded OAuth2 token request',
      })
    }
    const form = request.body
    const grantType = form.get('grant_type')
    if (grantType !== 'password') {
      throw new OciError('UNSUPPORTED', {
        status: 400,
        message:
          grantType === 'refresh_token'
            ? 'refresh tokens are not issued; use grant_type=password or GET /auth/token'
            : 'grant_type must be password',
      })
    }
    const scopes = requestedScopes(form.getAll('scope'), endpoint.maxScopes)
    const credentials = {
      username: (form.get('username') ?? '').trim(),
      password: form.get('password') ?? '',
    }
    const issued = await issue(endpoint, limiters, request, credentials, scopes)
    return send(reply, { ...issued, scope: formatScopes(issued.granted) })
  })
}

function requestedScopes(
  input: string | readonly string[] | undefined,
  maxScopes: number,
): TokenScope[] {
  try {
    const scopes = parseScopes(input)
    if (scopes.length > maxScopes) {
      throw new OciError('QUERY_PARAMETER_INVALID', {
        message: `a token request may name at most ${maxScopes} scopes; this one names ${scopes.length}`,
      })
    }
    return scopes
  } catch (error) {
    if (error instanceof InvalidScopeError) {
      throw new OciError('QUERY_PARAMETER_INVALID', { message: error.message, cause: error })
    }
    throw error
  }
}

interface Issued {
  token: string
  expiresIn: number
  issuedAt: Date
  granted: TokenScope[]
}

async function issue(
  endpoint: TokenEndpoint,
  limiters: Limiters,
  request: FastifyRequest,
  credentials: Credentials | null,
  requested: TokenScope[],
): Promise<Issued> {
  const did = credentials === null ? null : await signIn(endpoint, limiters, request, credentials)
  const granted = await grantScopes(requested, did, endpoint.resolveHandle)
  return { ...(await endpoint.tokens.issue(did, granted)), granted }
}

/** Checks credentials within the account's limits; a refusal counts against them. */
async function signIn(
  endpoint: TokenEndpoint,
  limiters: Limiters,
  request: FastifyRequest,
  credentials: Credentials,
): Promise<string> {
  if (accountOf(request) !== null) {
    const total = await limiters.account(request)
    if (!total.isAllowed && total.isExceeded) {
      throw tooManyRequests(total.ttlInSeconds, 'too many token requests for this account')
    }
  }
  // Peek: only refusals are counted, so a busy account that signs in right is not held up.
  for (const limiter of [limiters.failedByAccount, limiters.failedByAddress]) {
    const failed = await limiter(request, { increment: false })
    if (!failed.isAllowed && failed.remaining === 0) {
      throw tooManyRequests(
        failed.ttlInSeconds,
        'too many refused sign-ins; wait before trying again',
      )
    }
  }
  try {
    return await endpoint.checker.check(credentials)
  } catch (error) {
    if (error instanceof OciError && error.code === 'UNAUTHORIZED') {
      await limiters.failedByAccount(request)
      await limiters.failedByAddress(request)
    }
    throw error
  }
}

function send(reply: FastifyReply, issued: Issued & { scope?: string }) {
  const body: Record<string, unknown> = {
    token: issued.token,
    access_token: issued.token,
    expires_in: issued.expiresIn,
    issued_at: issued.issuedAt.toISOString(),
  }
  if (issued.scope !== undefined) body.scope = issued.scope
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(body)
}
