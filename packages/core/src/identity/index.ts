// did:plc identities (create, load, keep current) are `@atcr/core/identity/plc`, apart from
// this barrel: @did-plc/lib weighs about 7 MiB of heap, and only the hold uses it.
export { ResponseTooLargeError, readBoundedJson, readBoundedText } from './body.ts'
export { type CacheCounter, TtlCache, type TtlCacheOptions } from './cache.ts'
export {
  type AtprotoDocumentData,
  type DidDocument,
  extractAtprotoDocumentData,
  getServiceEndpoint,
  parseDidDocument,
} from './did-document.ts'
export {
  type DidWebUrlOptions,
  didWebDocumentUrl,
  didWebFromUrl,
  didWebHasPath,
  didWebToUrl,
} from './did-web.ts'
export {
  DidDocumentInvalidError,
  HandleMismatchError,
  IdentityError,
  type IdentityErrorCode,
  IdentityIncompleteError,
  IdentityNotFoundError,
  IdentityUnavailableError,
  InvalidDidError,
  InvalidHandleError,
} from './errors.ts'
export {
  type HandleLookupOptions,
  lookupHandleDid,
  normalizeHandle,
  type ResolveTxt,
} from './handle.ts'
export {
  KeyFileError,
  type KeyFileOptions,
  KeyFilePermissionsError,
  loadKeypair,
  loadOrCreateKeypair,
  loadRotationKey,
} from './keys.ts'
export { IDENTITY_MODES, type IdentityMode, isIdentityMode } from './mode.ts'
export {
  createIdentityResolver,
  DEFAULT_PLC_URL,
  type IdentityResolver,
  type IdentityResolverOptions,
  type ResolvedDid,
  type ResolvedIdentity,
  type ResolveOptions,
} from './resolver.ts'
export {
  addressBlockReason,
  createGuardedFetch,
  createRedirectCheck,
  type FetchLike,
  type GuardedFetch,
  type GuardedFetchOptions,
  type LookupAll,
  type RedirectCheck,
  SsrfBlockedError,
  type SsrfBlockReason,
} from './ssrf.ts'
export type { StreamUploadInit } from './stream-upload.ts'
