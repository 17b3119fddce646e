// ATProto OAuth sign-in (PAR, PKCE, DPoP) with @atproto/oauth-client-node. In production
// (an https base URL) the AppView is a confidential client: its metadata is served at
// /oauth-client-metadata.json and it signs client assertions with a P-256 key kept in
// <data_dir>/auth/oauth-client-key.pem (0600, made once). With an http base URL (dev mode,
// local networks) it is a loopback client, which needs no metadata document or key; the
// base URL must then be http://127.0.0.1:PORT (the PDS refuses `localhost` redirects).
//
// Authorizations in progress and sessions live in the database, sealed with the session
// key. Refreshes of one DID's tokens are serialised by the library's request lock.

import { databaseLock } from '@atcr/core/database'
import type { GuardedFetch, IdentityResolver } from '@atcr/core/identity'
import { HOLD_UPLOAD_BLOB, NSID } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import {
  createOAuthClient,
  loadOrCreateTokenKey,
  type NodeOAuthClient,
  OAuthStore,
  type Sealer,
} from '@atcr/core/oauth'
import type { Agent } from '@atproto/lex-client'
import type { AppViewConfig } from '../config.ts'
import type { AppViewDatabase } from '../db/index.ts'
import { NoSessionError } from './types.ts'

// The first key of the OAuth client's advisory locks (PostgreSQL): its own lock space.
const OAUTH_LOCK_SPACE = 0x4f415554

export const CALLBACK_PATH = '/auth/oauth/callback'
export const CLIENT_METADATA_PATH = '/oauth-client-metadata.json'
export const JWKS_PATH = '/oauth/jwks.json'

/** Collections the AppView writes in the user's repository. */
const COLLECTIONS = [
  NSID.manifest,
  NSID.tag,
  NSID.sailorProfile,
  NSID.sailorStar,
  NSID.repoPage,
] as const

/** Methods the AppView calls on holds for the user (service tokens minted by their PDS). */
const HOLD_METHODS = [
  NSID.holdInitiateUpload,
  NSID.holdGetPartUploadUrl,
  NSID.holdUploadPart,
  NSID.holdCompleteUpload,
  NSID.holdAbortUpload,
  HOLD_UPLOAD_BLOB,
  NSID.holdNotifyManifest,
  NSID.holdRequestCrew,
  'com.atproto.sync.getBlob',
] as const

/**
 * The scope the AppView asks for: `atproto`, the io.atcr collections (granular `repo:`
 * scopes, or the `io.atcr.authFullApp` permission set where the PDS resolves it), blob
 * uploads (manifests are stored as blobs) and `rpc:` for the hold methods, any audience.
 */
export function oauthScope(usePermissionSet: boolean): string {
  const repo = usePermissionSet
    ? ['include:io.atcr.authFullApp']
    : COLLECTIONS.map((collection) => `repo:${collection}`)
  const rpc = HOLD_METHODS.map((method) => `rpc:${method}?aud=*`)
  return ['atproto', ...repo, 'blob:*/*', ...rpc].join(' ')
}

export interface OAuthSignInOptions {
  config: AppViewConfig
  db: AppViewDatabase
  sealer: Sealer
  identity: IdentityResolver
  fetch: GuardedFetch
  logger: Logger
  keyPath: string
  now: () => number
}

/** OAuth sign-in is off: an http base URL that is not a loopback address. */
export class OAuthUnavailableError extends Error {
  override readonly name = 'OAuthUnavailableError'
}

export class OAuthSignIn {
  /** Null when sign-in is off (see OAuthUnavailableError). */
  readonly #client: NodeOAuthClient | null
  readonly scope: string
  readonly confidential: boolean
  readonly #store: OAuthStore
  readonly #logger: Logger

  private constructor(client: NodeOAuthClient | null, scope: string, options: OAuthSignInOptions) {
    this.#client = client
    this.scope = scope
    this.confidential = client?.clientMetadata.token_endpoint_auth_method === 'private_key_jwt'
    this.#store = new OAuthStore(options.db)
    this.#logger = options.logger
  }

  get client(): NodeOAuthClient {
    if (!this.#client) {
      throw new OAuthUnavailableError(
        'OAuth sign-in needs an https base_url, or http://127.0.0.1:PORT for local use',
      )
    }
    return this.#client
  }

  get available(): boolean {
    return this.#client !== null
  }

  static async create(options: OAuthSignInOptions): Promise<OAuthSignIn> {
    const { config } = options
    const scope = oauthScope(config.oauth.permission_set)
    const client = await createOAuthClient({
      baseUrl: config.server.base_url,
      callbackPath: CALLBACK_PATH,
      clientMetadataPath: CLIENT_METADATA_PATH,
      jwksPath: JWKS_PATH,
      clientName: config.oauth.client_name,
      scope,
      allowHttp: config.server.mode === 'dev',
      signingKey: () => loadOrCreateTokenKey(options.keyPath),
      fetch: options.fetch,
      identity: options.identity,
      // Token refreshes of one session run one at a time across every instance sharing a
      // PostgreSQL database (refresh tokens are single-use).
      requestLock: databaseLock(options.db, OAUTH_LOCK_SPACE),
      store: new OAuthStore(options.db),
      sealer: options.sealer,
      now: options.now,
    })
    if (!client) {
      // A loopback client must redirect to a loopback address; anything else cannot sign in.
      options.logger.warn(
        { base_url: config.server.base_url },
        'OAuth sign-in is off: server.base_url must be https, or http://127.0.0.1:PORT locally',
      )
    }
    return new OAuthSignIn(client, scope, options)
  }

  /** Drops stored sessions that asked for another scope than the configured one. */
  async dropMismatchedSessions(): Promise<number> {
    if (!this.#client) return 0
    const dropped = await this.#store.dropOtherScopes(this.scope)
    if (dropped > 0) {
      this.#logger.info(
        { dropped },
        'OAuth sessions with other scopes dropped; users sign in again',
      )
    }
    return dropped
  }

  /** The PDS's authorize URL for a handle (or DID); `state` comes back to the callback. */
  async authorizeUrl(handle: string, state: string): Promise<URL> {
    return this.client.authorize(handle, { scope: this.scope, state })
  }

  /** Completes a sign-in from the callback's query; the DID and the state given earlier. */
  async callback(params: URLSearchParams): Promise<{ did: string; state: string | null }> {
    const { session, state } = await this.client.callback(params)
    return { did: session.did, state }
  }

  async hasSession(did: string): Promise<boolean> {
    return this.#store.hasSession(did)
  }

  /** The user's OAuth session (refreshed when due) as an agent; NoSessionError if none. */
  async agentFor(did: string): Promise<Agent> {
    if (!this.#client) throw new NoSessionError(did)
    try {
      return await this.#client.restore(did)
    } catch (error) {
      this.#logger.info({ did, err: error }, 'OAuth session unusable; the user must sign in again')
      throw new NoSessionError(did)
    }
  }

  /** Ends the user's OAuth session at their PDS and here. */
  async revoke(did: string): Promise<void> {
    await this.#client?.revoke(did).catch(() => {})
    await this.#store.deleteSession(did)
  }
}
