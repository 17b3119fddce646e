export {
  canSignIn,
  createOAuthClient,
  type NodeOAuthClient,
  type OAuthClientOptions,
} from './client.ts'
export {
  AuthKeyFileError,
  loadOrCreateSessionKey,
  loadOrCreateTokenKey,
  type TokenSigningKey,
} from './keys.ts'
export { Sealer, UnsealError } from './sealer.ts'
export {
  createOAuthTables,
  dropOAuthTables,
  OAUTH_STATE_LIFETIME_MS,
  type OAuthDatabase,
  type OAuthSessionTable,
  type OAuthStateTable,
  OAuthStore,
  type OAuthTables,
  type WebSessionTable,
} from './store.ts'
export { WebSessions, type WebUser } from './web-sessions.ts'
