// An ATProto OAuth client (PAR, PKCE, DPoP) on @atproto/oauth-client-node, as the AppView
// and the hold's admin pages use it. With an https base URL it is a confidential client:
// its metadata document and JWKS are served by the app at the paths given, and it signs
// client assertions with a P-256 key. With http://127.0.0.1:PORT (dev, local networks) it
// is a loopback client, which needs neither (the PDS refuses `localhost` redirects). Any
// other http base URL cannot sign in: the factory returns null.
//
// Authorizations in progress and sessions are kept in the service's database, sealed.
import type { KeyObject } from 'node:crypto'
import {
  JoseKey,
  NodeOAuthClient,
  type NodeSavedSession,
  type NodeSavedState,
  type OAuthClientMetadataInput,
  type RuntimeLock,
} from '@atproto/oauth-client-node'
import type { GuardedFetch, IdentityResolver } from '../identity/index.ts'
import type { Sealer } from './sealer.ts'
import type { OAuthStore } from './store.ts'

export type { NodeOAuthClient } from '@atproto/oauth-client-node'

const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', '[::1]'])

/** Whether an app at `baseUrl` can sign users in (https, or an http loopback address). */
export function canSignIn(baseUrl: string): boolean {
  const base = new URL(baseUrl)
  return base.protocol === 'https:' || LOOPBACK_HOSTS.has(base.hostname)
}

export interface OAuthClientOptions {
  /** Where browsers reach the app. */
  baseUrl: string
  callbackPath: string
  /** Served by the app for a confidential client (https). */
  clientMetadataPath: string
  jwksPath: string
  clientName: string
  scope: string
  /** Accept http authorization servers (dev mode). */
  allowHttp: boolean
  /** The confidential client's P-256 key (asked for only with an https base URL). */
  signingKey: () => Promise<{ privateKey: KeyObject; kid: string }>
  fetch: GuardedFetch
  identity: IdentityResolver
  /** Serialises token refreshes of one session (across instances sharing a database). */
  requestLock?: RuntimeLock
  store: OAuthStore
  sealer: Sealer
  now: () => number
}

/** The client, or null when the base URL cannot sign in (see {@link canSignIn}). */
export async function createOAuthClient(
  options: OAuthClientOptions,
): Promise<NodeOAuthClient | null> {
  const { store, sealer, identity, now, scope } = options
  if (!canSignIn(options.baseUrl)) return null
  const base = new URL(options.baseUrl)
  const callback = new URL(options.callbackPath, base).href
  let clientMetadata: OAuthClientMetadataInput
  let keyset: JoseKey[] | undefined
  if (base.protocol === 'https:') {
    const key = await options.signingKey()
    keyset = [await JoseKey.fromKeyLike(key.privateKey, key.kid, 'ES256')]
    clientMetadata = {
      client_id: new URL(options.clientMetadataPath, base).href,
      client_name: options.clientName,
      client_uri: base.href,
      redirect_uris: [callback as `https://${string}`],
      scope,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'web',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      dpop_bound_access_tokens: true,
      jwks_uri: new URL(options.jwksPath, base).href as `https://${string}`,
    }
  } else {
    const query = new URLSearchParams({ redirect_uri: callback, scope })
    clientMetadata = {
      client_id: `http://localhost?${query}`,
      redirect_uris: [callback as `http://127.0.0.1:${string}`],
      scope,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      dpop_bound_access_tokens: true,
    }
  }
  return new NodeOAuthClient({
    clientMetadata,
    ...(keyset ? { keyset } : {}),
    responseMode: 'query',
    allowHttp: options.allowHttp,
    fetch: options.fetch as typeof fetch,
    ...(options.requestLock ? { requestLock: options.requestLock } : {}),
    identityResolver: {
      resolve: async (input) => {
        const resolved = await identity.resolveIdentity(input)
        return {
          did: resolved.did as `did:plc:${string}`,
          didDoc: resolved.document as never,
          handle: resolved.handle ?? 'handle.invalid',
        }
      },
    },
    stateStore: {
      get: async (key) => {
        const sealed = await store.state(key, now())
        if (!sealed) return undefined
        return sealer.unseal<NodeSavedState>(`oauth_state ${key}`, sealed)
      },
      set: async (key, value) => {
        await store.setState(key, sealer.seal(`oauth_state ${key}`, value), now())
      },
      del: (key) => store.deleteState(key),
    },
    sessionStore: {
      get: async (did) => {
        const sealed = await store.session(did)
        if (!sealed) return undefined
        return sealer.unseal<NodeSavedSession>(`oauth_session ${did}`, sealed)
      },
      set: async (did, value) => {
        await store.setSession(did, sealer.seal(`oauth_session ${did}`, value), scope, now())
      },
      del: (did) => store.deleteSession(did),
    },
  })
}
