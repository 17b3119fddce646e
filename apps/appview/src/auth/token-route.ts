// /auth/token: the Docker token-auth endpoint. GET with optional HTTP Basic credentials (the
// distribution token spec), or POST with the OAuth2 password grant (which containerd tries
// first). Without credentials the token allows pulls only.
import type { IdentityResolver } from '@atcr/core/identity'
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
  identity: IdentityResolver
  /** The realm of the Basic challenge sent with refused credentials. */
  basicRealm: string
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
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
    (_request, body, done) => done(null, new URLSearchParams(body as string)),
  )

  app.get('/auth/token', async (request, reply) => {
    const query = request.query as Record<string, string | string[] | undefined>
    const scopes = requestedScopes(query.scope)
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
    const issued = await issue(endpoint, credentials, scopes)
    return send(reply, issued)
  })

  app.post('/auth/token', async (request: FastifyRequest, reply) => {
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
    const scopes = requestedScopes(form.getAll('scope'))
    const credentials = {
      username: (form.get('username') ?? '').trim(),
      password: form.get('password') ?? '',
    }
    const issued = await issue(endpoint, credentials, scopes)
    return send(reply, { ...issued, scope: formatScopes(issued.granted) })
  })
}

function requestedScopes(input: string | readonly string[] | undefined): TokenScope[] {
  try {
    return parseScopes(input)
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
  credentials: Credentials | null,
  requested: TokenScope[],
): Promise<Issued> {
  const did = credentials === null ? null : await endpoint.checker.check(credentials)
  const granted = await grantScopes(requested, did, (handle) =>
    endpoint.identity.resolveHandle(handle),
  )
  return { ...(await endpoint.tokens.issue(did, granted)), granted }
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
