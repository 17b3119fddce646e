// Authentication of the AppView: registry tokens (/auth/token and the /v2 Bearer check) and
// the users' PDS sessions, built once from the base context.
import { subsystemLogger } from '@atcr/core/log'
import { OciError, ociErrorResponse } from '@atcr/core/oci'
import type { FastifyError, FastifyInstance } from 'fastify'
import { serviceName } from '../config.ts'
import type { AppViewBase, AppViewContext } from '../context.ts'
import { CredentialChecker, type DeviceSecretVerifier, noDeviceSecrets } from './credentials.ts'
import { authKeyPaths, loadOrCreateSessionKey, loadOrCreateTokenKey } from './keys.ts'
import { TokenRegistryAuth } from './registry-auth.ts'
import { RegistryTokens } from './registry-token.ts'
import { SessionStore } from './session-store.ts'
import { PdsSessions } from './sessions.ts'
import { credentialsRefused, registerTokenRoutes, type TokenEndpoint } from './token-route.ts'
import type { RegistryAuth, UserSessions } from './types.ts'
import { VerifiedLogins } from './verified-logins.ts'

export type { DeviceSecretVerifier } from './credentials.ts'
export type { Caller, RegistryAuth, UserSessions } from './types.ts'
export { NoSessionError } from './types.ts'

export interface AuthServices {
  auth: RegistryAuth
  sessions: UserSessions
}

export interface AuthServicesOptions {
  /** Checks device secrets before app passwords (the device flow plugs in here). */
  deviceSecrets?: DeviceSecretVerifier
}

// What the /auth routes need beyond the two services, found again from `ctx.auth`.
const endpoints = new WeakMap<RegistryAuth, TokenEndpoint>()

/** Loads (or creates) the keys under `<data_dir>/auth/` and builds the services. */
export async function createAuthServices(
  base: AppViewBase,
  options: AuthServicesOptions = {},
): Promise<AuthServices> {
  const { config } = base
  const logger = subsystemLogger(base.logger, 'auth')
  const paths = authKeyPaths(config.server.data_dir)
  const tokens = new RegistryTokens({
    key: await loadOrCreateTokenKey(paths.tokenKey),
    service: serviceName(config),
    lifetime: config.registry.token_expiration,
  })
  const store = new SessionStore(base.db, await loadOrCreateSessionKey(paths.sessionKey))
  const verified = new VerifiedLogins()
  const sessions = new PdsSessions({
    store,
    fetch: base.fetch,
    logger,
    onSessionEnded: (did) => verified.forgetDid(did),
  })
  const auth = new TokenRegistryAuth({ tokens, realm: tokenRealm(config.server.base_url) })
  const basicRealm = tokens.service
  const checker = new CredentialChecker({
    identity: base.identity,
    sessions,
    store,
    verified,
    deviceSecrets: options.deviceSecrets ?? noDeviceSecrets,
    defaultHoldDid: config.registry.default_hold_did,
    logger,
    unauthorized: (message) => credentialsRefused(basicRealm, message),
  })
  endpoints.set(auth, { tokens, checker, identity: base.identity, basicRealm })
  return { auth, sessions }
}

/** The /auth/* routes, answering errors with the OCI JSON envelope. */
export async function registerAuthRoutes(app: FastifyInstance, ctx: AppViewContext): Promise<void> {
  const endpoint = endpoints.get(ctx.auth)
  if (!endpoint) throw new TypeError('registerAuthRoutes needs the services of createAuthServices')
  await app.register(async (scope) => {
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      const oci =
        error instanceof OciError
          ? error
          : error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500
            ? new OciError('UNSUPPORTED', { status: error.statusCode, message: error.message })
            : error
      const response = ociErrorResponse(oci)
      if (response.status >= 500) request.log.error({ err: error }, 'token request failed')
      return reply.status(response.status).headers(response.headers).send(response.body)
    })
    registerTokenRoutes(scope, endpoint)
  })
}

function tokenRealm(baseUrl: string): string {
  return new URL('/auth/token', baseUrl).href
}
