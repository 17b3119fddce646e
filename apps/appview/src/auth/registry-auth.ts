// /v2 callers: who they are, from the registry token they present, and the challenge that
// sends them to /auth/token for one.
import { buildBearerChallenge, OciError, type TokenScope, toAccessEntries } from '@atcr/core/oci'
import type { FastifyRequest } from 'fastify'
import { InvalidRegistryTokenError, type RegistryTokens } from './registry-token.ts'
import type { Caller, RegistryAuth } from './types.ts'

export interface TokenRegistryAuthOptions {
  tokens: RegistryTokens
  /** The token endpoint's URL, the challenges' realm. */
  realm: string
}

export class TokenRegistryAuth implements RegistryAuth {
  private readonly tokens: RegistryTokens
  private readonly realm: string

  constructor(options: TokenRegistryAuthOptions) {
    this.tokens = options.tokens
    this.realm = options.realm
  }

  async authenticate(request: FastifyRequest): Promise<Caller> {
    const header = request.headers.authorization
    const bearer = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    // Other schemes (Basic sent up front by some clients) are not registry tokens: such a
    // caller is anonymous until it follows the Bearer challenge.
    if (!bearer) return { did: null, access: [] }
    try {
      return await this.tokens.verify(bearer[1]!)
    } catch (error) {
      if (error instanceof InvalidRegistryTokenError) {
        throw this.challenge(undefined, 'invalid_token', error)
      }
      throw error
    }
  }

  challenge(
    scope?: TokenScope[],
    error?: 'invalid_token' | 'insufficient_scope',
    cause?: unknown,
  ): OciError {
    const header = buildBearerChallenge({
      realm: this.realm,
      service: this.tokens.service,
      scope,
      error,
    })
    const message =
      error === 'invalid_token'
        ? 'the registry token is invalid or expired'
        : error === 'insufficient_scope'
          ? 'the registry token does not allow this'
          : 'authentication required'
    const options: ConstructorParameters<typeof OciError>[1] = {
      message,
      headers: { 'WWW-Authenticate': header },
      cause,
    }
    if (scope !== undefined && scope.length > 0) options.detail = toAccessEntries(scope)
    return new OciError('UNAUTHORIZED', options)
  }
}
