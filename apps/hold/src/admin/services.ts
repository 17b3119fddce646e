// What the admin pages need, built once by the hold's context: the ATProto OAuth client the
// owner signs in with (loopback in dev, confidential over https) and the browser sessions.
// OAuth state and sessions are sealed with a key derived from the hold's identity key (no
// other secret to keep; rotating the identity key signs every admin out).
import { hkdfSync } from 'node:crypto'
import { join } from 'node:path'
import { createGuardedFetch, type IdentityResolver } from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import {
  createOAuthClient,
  loadOrCreateTokenKey,
  type NodeOAuthClient,
  OAuthStore,
  Sealer,
  WebSessions,
} from '@atcr/core/oauth'
import { adminBaseUrl, type HoldConfig } from '../config.ts'
import type { HoldDatabase } from '../db/index.ts'
import type { HoldIdentity } from '../identity.ts'

export const ADMIN_PREFIX = '/admin'
export const LOGIN_PATH = '/admin/auth/login'
export const CALLBACK_PATH = '/admin/auth/callback'
export const LOGOUT_PATH = '/admin/auth/logout'
export const CLIENT_METADATA_PATH = '/admin/oauth-client-metadata.json'
export const JWKS_PATH = '/admin/oauth/jwks.json'
/** The admin pages only need to know who signed in. */
export const ADMIN_SCOPE = 'atproto'

export interface AdminServices {
  /** Where browsers reach the admin pages (the OAuth redirect's origin). */
  baseUrl: string
  /** Null when sign-in cannot work at this base URL (see @atcr/core/oauth canSignIn). */
  oauth: NodeOAuthClient | null
  sessions: WebSessions
}

export async function createAdminServices(options: {
  config: HoldConfig
  db: HoldDatabase
  identity: HoldIdentity
  resolver: IdentityResolver
  logger: Logger
}): Promise<AdminServices> {
  const { config, db, identity, logger } = options
  const baseUrl = adminBaseUrl(config)
  const secret = await identity.signingKey.export()
  const sealer = new Sealer(
    Buffer.from(hkdfSync('sha256', secret, '', 'atcr-hold admin oauth sessions', 32)),
  )
  const oauth = await createOAuthClient({
    baseUrl,
    callbackPath: CALLBACK_PATH,
    clientMetadataPath: CLIENT_METADATA_PATH,
    jwksPath: JWKS_PATH,
    clientName: config.admin.client_name,
    scope: ADMIN_SCOPE,
    allowHttp: config.server.mode === 'dev',
    signingKey: () =>
      loadOrCreateTokenKey(join(config.server.data_dir, 'admin', 'oauth-client-key.pem')),
    fetch: createGuardedFetch({ mode: config.server.mode }),
    identity: options.resolver,
    store: new OAuthStore(db),
    sealer,
    now: Date.now,
  })
  if (!oauth) {
    logger.warn(
      { admin_base_url: baseUrl },
      'admin sign-in is off: admin.base_url must be https, or http://127.0.0.1:PORT locally',
    )
  }
  return {
    baseUrl,
    oauth,
    sessions: new WebSessions(db, config.admin.session_lifetime * 1000, Date.now),
  }
}
