// Authentication of the AppView: registry tokens (/auth/token and the /v2 Bearer check) and
// the users' PDS sessions. Built by the context (context.ts); the routes take them from it.
import type { Logger } from '@atcr/core/log'
import { loadOrCreateSessionKey, loadOrCreateTokenKey, Sealer, WebSessions } from '@atcr/core/oauth'
import type { FastifyInstance } from 'fastify'
import { serviceName } from '../config.ts'
import type { AppViewBase, AppViewContext } from '../context.ts'
import { CredentialChecker } from './credentials.ts'
import { DeviceFlow } from './devices.ts'
import { FailedLookups } from './failed-lookups.ts'
import { authKeyPaths } from './keys.ts'
import { OAuthSignIn } from './oauth.ts'
import { TokenRegistryAuth } from './registry-auth.ts'
import { RegistryTokens } from './registry-token.ts'
import { SessionStore } from './session-store.ts'
import { PdsSessions } from './sessions.ts'
import { credentialsRefused, registerTokenRoutes } from './token-route.ts'
import type { RegistryAuth, UserSessions } from './types.ts'
import { VerifiedLogins } from './verified-logins.ts'

export type { DeviceSecretVerifier } from './credentials.ts'
export type { Caller, RegistryAuth, UserSessions } from './types.ts'
export { NoSessionError } from './types.ts'

export interface AuthServices {
  /** Signs and verifies registry tokens. */
  tokens: RegistryTokens
  /** The /v2 side: callers from their registry tokens, and challenges. */
  auth: RegistryAuth
  /** The user's PDS, for the registry's writes and service tokens. */
  sessions: UserSessions
  /** App-password sessions (com.atproto.server.createSession). */
  pdsSessions: PdsSessions
  /** Checks /auth/token credentials. */
  credentials: CredentialChecker
  /** The realm of the Basic challenge sent with refused credentials. */
  basicRealm: string
  oauth: OAuthSignIn
  webSessions: WebSessions
  devices: DeviceFlow
}

/** Loads (or creates) the keys under `<data_dir>/auth/` and builds the services. */
export async function buildAuthServices(base: AppViewBase, logger: Logger): Promise<AuthServices> {
  const { config } = base
  const paths = authKeyPaths(config.server.data_dir)
  const tokens = new RegistryTokens({
    key: await loadOrCreateTokenKey(paths.tokenKey),
    service: serviceName(config),
    lifetime: config.registry.token_expiration,
    verifiedCounter: base.metrics.cacheCounter('registry_token'),
  })
  const sessionKey = await loadOrCreateSessionKey(paths.sessionKey)
  const store = new SessionStore(base.db, sessionKey)
  const oauth = await OAuthSignIn.create({
    config,
    db: base.db,
    sealer: new Sealer(sessionKey),
    identity: base.identity,
    fetch: base.fetch,
    logger,
    keyPath: paths.oauthClientKey,
    now: base.now,
  })
  await oauth.dropMismatchedSessions()
  const devices = new DeviceFlow({
    db: base.db,
    codeLifetime: config.oauth.device_code_lifetime,
    interval: config.oauth.device_poll_interval,
    now: base.now,
  })
  const webSessions = new WebSessions(base.db, config.oauth.web_session_lifetime * 1000, base.now)
  const verified = new VerifiedLogins({
    now: base.now,
    recheckMs: config.auth.app_password_recheck * 1000,
  })
  const pdsSessions = new PdsSessions({
    store,
    fetch: base.fetch,
    logger,
    oauth,
    onSessionEnded: (did) => verified.forgetDid(did),
    serviceTokenCounter: base.metrics.cacheCounter('service_token'),
  })
  const auth = new TokenRegistryAuth({ tokens, realm: tokenRealm(config.server.base_url) })
  const basicRealm = tokens.service
  const credentials = new CredentialChecker({
    identity: base.identity,
    sessions: pdsSessions,
    store,
    verified,
    deviceSecrets: devices,
    defaultHoldDid: config.registry.default_hold_did,
    logger,
    unauthorized: (message) => credentialsRefused(basicRealm, message),
  })
  return {
    tokens,
    auth,
    sessions: pdsSessions,
    pdsSessions,
    credentials,
    basicRealm,
    oauth,
    webSessions,
    devices,
  }
}

/** The /auth/token routes (errors: the OCI JSON envelope, set by the caller's scope). */
export function registerAuthRoutes(app: FastifyInstance, ctx: AppViewContext): void {
  const { auth } = ctx.config
  const failed = new FailedLookups({ ttlMs: auth.failed_lookup_ttl * 1000, now: ctx.now })
  registerTokenRoutes(app, {
    tokens: ctx.tokens,
    checker: ctx.credentials,
    resolveHandle: failed.wrap((handle) => ctx.identity.resolveHandle(handle)),
    basicRealm: ctx.basicRealm,
    maxScopes: auth.max_scopes_per_request,
    limits: {
      windowMs: auth.rate_limit.window * 1000,
      perAddress: auth.rate_limit.token_per_address,
      perAccount: auth.rate_limit.token_per_account,
      failedSignIns: auth.rate_limit.failed_sign_ins,
      failedSignInsPerAddress: auth.rate_limit.failed_sign_ins_per_address,
      failedSignInWindowMs: auth.rate_limit.failed_sign_in_window * 1000,
    },
  })
}

function tokenRealm(baseUrl: string): string {
  return new URL('/auth/token', baseUrl).href
}
