// Handle and DID resolution. Ours rather than @atproto/identity's IdResolver, for what it
// lacks: its did:web resolver takes any failed answer (a 500, a proxy error) for "no such
// DID", where callers must tell a refusal from a retry (a service token whose issuer's
// host is down is a 503, not a 401); it reads documents with an unbounded res.json(); it
// reaches http only for the host `localhost` (a dev stack also has *.localhost, docker
// service names and IP literals); its memory cache has no bound on entries and no floor on
// forced refreshes; and its handle resolver has no resolveHandle-over-XRPC nor an injected
// TXT lookup. The atproto rules themselves are the libraries': DID syntax (@atproto/did),
// handles (@atproto/syntax), keys (@atproto/crypto).
import { isAtprotoDid, isDidPlc } from '@atproto/did'
import { ResponseTooLargeError, readBoundedJson } from './body.ts'
import { type CacheCounter, TtlCache } from './cache.ts'
import {
  type AtprotoDocumentData,
  type DidDocument,
  extractAtprotoDocumentData,
  parseDidDocument,
} from './did-document.ts'
import { didWebDocumentUrl, didWebHasPath } from './did-web.ts'
import {
  DidDocumentInvalidError,
  HandleMismatchError,
  IdentityError,
  IdentityIncompleteError,
  IdentityNotFoundError,
  IdentityUnavailableError,
  InvalidDidError,
} from './errors.ts'
import {
  type HandleLookupOptions,
  lookupHandleDid,
  normalizeHandle,
  type ResolveTxt,
} from './handle.ts'
import type { IdentityMode } from './mode.ts'
import { createGuardedFetch, type FetchLike, type LookupAll, SsrfBlockedError } from './ssrf.ts'

export const DEFAULT_PLC_URL = 'https://plc.directory'

export interface IdentityResolverOptions {
  mode: IdentityMode
  /** PLC directory; default https://plc.directory. */
  plcUrl?: string
  /** How long resolved documents and handles are trusted; default 10 minutes. */
  cacheTtlMs?: number
  /** Bound on cached documents (and, separately, handles); default 10 000. */
  cacheMaxEntries?: number
  /** Counts the hits and misses of the `did_document` and `handle` caches (metrics). */
  cacheCounter?: (cache: 'did_document' | 'handle') => CacheCounter
  /**
   * A forced refresh (after a signature failed with a cached key) is skipped when the
   * cached document is younger than this, so bad tokens cannot make us hammer the PLC.
   * Default 5 s.
   */
  minRefreshIntervalMs?: number
  /** Per-request timeout; default 5 s. */
  timeoutMs?: number
  /** The fetch to use; default a guarded fetch for `mode` (closed by `close()`). */
  fetch?: FetchLike
  /** Name resolution for the default guarded fetch (tests map names to loopback). */
  lookup?: LookupAll
  /** DNS TXT lookups for handles; default `dns.promises.resolveTxt`. */
  resolveTxt?: ResolveTxt
  /** Dev mode only: where to reach `/.well-known/atproto-did` (see `HandleLookupOptions`). */
  handleWellKnown?: HandleLookupOptions['wellKnown']
  /** Resolve handles with this XRPC service's com.atproto.identity.resolveHandle. */
  handleResolver?: string
}

/** A resolved DID document with what atproto reads from it (the handle is unverified). */
export interface ResolvedDid extends AtprotoDocumentData {
  document: DidDocument
}

/** A complete atproto identity: the handle is present only if verified both ways. */
export interface ResolvedIdentity {
  did: string
  handle: string | undefined
  pdsEndpoint: string
  signingKey: string
  document: DidDocument
}

export interface ResolveOptions {
  forceRefresh?: boolean
}

export interface IdentityResolver {
  readonly mode: IdentityMode
  /** handle → DID, checked both ways (the DID document must claim the handle). */
  resolveHandle(handle: string, options?: ResolveOptions): Promise<string>
  /** DID (did:plc or did:web) → validated document. */
  resolveDid(did: string, options?: ResolveOptions): Promise<ResolvedDid>
  /** A handle or a DID → DID, verified handle, PDS endpoint, signing key, document. */
  resolveIdentity(handleOrDid: string, options?: ResolveOptions): Promise<ResolvedIdentity>
  /** The DID's `#atproto` key as a did:key. */
  resolveSigningKey(did: string, options?: ResolveOptions): Promise<string>
  /** Drops a DID document from the cache. */
  invalidate(did: string): void
  close(): Promise<void>
}

const MAX_DOCUMENT_BYTES = 64 * 1024

/**
 * The one entry point for handle and DID resolution. Every request goes through the
 * SSRF-guarded fetch, results are cached with a TTL and a size bound, and failures are
 * typed (`IdentityNotFoundError`, `HandleMismatchError`, `IdentityUnavailableError`, ...).
 */
export function createIdentityResolver(options: IdentityResolverOptions): IdentityResolver {
  const { mode } = options
  const plcUrl = (options.plcUrl ?? DEFAULT_PLC_URL).replace(/\/+$/, '')
  const timeoutMs = options.timeoutMs ?? 5000
  const minRefreshIntervalMs = options.minRefreshIntervalMs ?? 5000
  const ownFetch = options.fetch ? undefined : createGuardedFetch({ mode, lookup: options.lookup })
  const fetch: FetchLike = options.fetch ?? ownFetch!
  const cacheOptions = {
    ttlMs: options.cacheTtlMs ?? 10 * 60_000,
    maxEntries: options.cacheMaxEntries ?? 10_000,
  }
  const documents = new TtlCache<ResolvedDid>({
    ...cacheOptions,
    counter: options.cacheCounter?.('did_document'),
  })
  const handles = new TtlCache<string>({
    ...cacheOptions,
    counter: options.cacheCounter?.('handle'),
  })
  const handleLookup: HandleLookupOptions = {
    mode,
    fetch,
    resolveTxt: options.resolveTxt,
    timeoutMs,
    wellKnown: options.handleWellKnown,
    xrpcResolver: options.handleResolver,
  }

  const fetchDocument = async (did: string): Promise<ResolvedDid> => {
    let url: URL
    if (isDidPlc(did)) {
      url = new URL(`${plcUrl}/${encodeURIComponent(did)}`)
    } else {
      if (didWebHasPath(did)) throw new InvalidDidError(did, 'atproto does not allow did:web paths')
      url = didWebDocumentUrl(did, { mode })
    }
    let response: Response
    try {
      response = await fetch(url, {
        headers: { accept: 'application/did+ld+json, application/json' },
        signal: AbortSignal.timeout(timeoutMs),
        // did:web documents are served in place (the atproto resolvers refuse redirects).
        redirect: isDidPlc(did) ? 'follow' : 'error',
      })
    } catch (error) {
      if (error instanceof IdentityError || error instanceof SsrfBlockedError) throw error
      throw new IdentityUnavailableError(did, `fetching ${url.href} failed`, { cause: error })
    }
    if (response.status === 404 || response.status === 410) {
      await response.body?.cancel()
      throw new IdentityNotFoundError(did, `HTTP ${response.status} from ${url.href}`)
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new IdentityUnavailableError(did, `HTTP ${response.status} from ${url.href}`)
    }
    let json: unknown
    try {
      json = await readBoundedJson(response, MAX_DOCUMENT_BYTES)
    } catch (error) {
      if (error instanceof ResponseTooLargeError || error instanceof SyntaxError) {
        throw new DidDocumentInvalidError(did, error.message, { cause: error })
      }
      throw new IdentityUnavailableError(did, `reading ${url.href} failed`, { cause: error })
    }
    const document = parseDidDocument(did, json)
    return { ...extractAtprotoDocumentData(document), document }
  }

  const resolveDid = async (did: string, resolveOptions: ResolveOptions = {}) => {
    if (!isAtprotoDid(did)) throw new InvalidDidError(did, 'not a did:plc or did:web')
    let force = resolveOptions.forceRefresh === true
    if (force) {
      const cached = documents.peek(did)
      if (cached && Date.now() - cached.storedAt < minRefreshIntervalMs) force = false
    }
    return documents.getOrLoad(did, () => fetchDocument(did), force)
  }

  const resolveHandle = async (input: string, resolveOptions: ResolveOptions = {}) => {
    const handle = normalizeHandle(input)
    const force = resolveOptions.forceRefresh === true
    return handles.getOrLoad(
      handle,
      async () => {
        const did = await lookupHandleDid(handle, handleLookup)
        let resolved = await resolveDid(did, resolveOptions)
        if (!claimsHandle(resolved.document, handle) && !force) {
          // A cached document may predate a handle change: look again before refusing.
          resolved = await resolveDid(did, { forceRefresh: true })
        }
        if (!claimsHandle(resolved.document, handle)) throw new HandleMismatchError(handle, did)
        return did
      },
      force,
    )
  }

  const verifiedHandle = async (resolved: ResolvedDid): Promise<string | undefined> => {
    if (!resolved.handle) return undefined
    try {
      const did = await resolveHandle(resolved.handle)
      return did === resolved.did ? resolved.handle : undefined
    } catch {
      // An unverifiable handle is simply not shown; the DID itself is still good.
      return undefined
    }
  }

  const resolveIdentity = async (handleOrDid: string, resolveOptions: ResolveOptions = {}) => {
    let did: string
    let handle: string | undefined
    if (handleOrDid.startsWith('did:')) {
      did = handleOrDid
    } else {
      handle = normalizeHandle(handleOrDid)
      did = await resolveHandle(handle, resolveOptions)
    }
    const resolved = await resolveDid(did, resolveOptions)
    if (handle === undefined) handle = await verifiedHandle(resolved)
    if (!resolved.signingKey) throw new IdentityIncompleteError(did, 'signingKey')
    if (!resolved.pdsEndpoint) throw new IdentityIncompleteError(did, 'pdsEndpoint')
    return {
      did,
      handle,
      pdsEndpoint: resolved.pdsEndpoint,
      signingKey: resolved.signingKey,
      document: resolved.document,
    }
  }

  const resolveSigningKey = async (did: string, resolveOptions: ResolveOptions = {}) => {
    const resolved = await resolveDid(did, resolveOptions)
    if (!resolved.signingKey) throw new IdentityIncompleteError(did, 'signingKey')
    return resolved.signingKey
  }

  return {
    mode,
    resolveHandle,
    resolveDid,
    resolveIdentity,
    resolveSigningKey,
    invalidate: (did) => {
      documents.delete(did)
    },
    close: async () => {
      documents.clear()
      handles.clear()
      await ownFetch?.close()
    },
  }
}

function claimsHandle(document: DidDocument, handle: string): boolean {
  return (document.alsoKnownAs ?? []).some((aka) => aka.toLowerCase() === `at://${handle}`)
}
