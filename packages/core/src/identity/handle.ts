import { Resolver } from 'node:dns/promises'
import { isAtprotoDid } from '@atproto/did'
import { ensureValidHandle, isValidTld } from '@atproto/syntax'
import { readBoundedJson, readBoundedText } from './body.ts'
import { IdentityNotFoundError, IdentityUnavailableError, InvalidHandleError } from './errors.ts'
import type { IdentityMode } from './mode.ts'
import type { FetchLike } from './ssrf.ts'

/** Lowercases and validates a handle (atproto handle syntax, no reserved TLDs). */
export function normalizeHandle(input: string): string {
  const handle = input.trim().toLowerCase()
  try {
    ensureValidHandle(handle)
  } catch (cause) {
    throw new InvalidHandleError(input, 'not a valid handle', { cause })
  }
  if (!isValidTld(handle)) throw new InvalidHandleError(input, 'reserved top-level domain')
  return handle
}

/** DNS TXT lookup; same shape as `dns.promises.resolveTxt`. */
export type ResolveTxt = (hostname: string) => Promise<string[][]>

export interface HandleLookupOptions {
  mode: IdentityMode
  fetch: FetchLike
  resolveTxt?: ResolveTxt
  timeoutMs?: number
  /**
   * Dev mode only: how to reach `https://<handle>/.well-known/atproto-did` in a local
   * stack, e.g. `{ protocol: 'http:', port: 2583 }` for a dev PDS. Ignored in production.
   */
  wellKnown?: { protocol?: 'http:' | 'https:'; port?: number }
  /**
   * An XRPC service answering `com.atproto.identity.resolveHandle` (a PDS, or a handle
   * resolver service), asked instead of DNS and `/.well-known`. The answer is still checked
   * both ways against the DID document by the resolver.
   */
  xrpcResolver?: string
}

const DNS_NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME'])

/**
 * The DID a handle claims, by DNS TXT `_atproto.<handle>` (`did=...`), else by
 * `/.well-known/atproto-did`. This is one direction only: callers must check that the
 * DID document claims the handle back.
 */
export async function lookupHandleDid(
  handle: string,
  options: HandleLookupOptions,
): Promise<string> {
  if (options.xrpcResolver) return lookupViaXrpc(handle, options.xrpcResolver, options)
  const timeoutMs = options.timeoutMs ?? 5000
  const abortHttp = new AbortController()
  // Both lookups start together; DNS wins when it answers.
  const httpAttempt = lookupWellKnown(handle, options, abortHttp.signal, timeoutMs).then(
    (did) => ({ did, error: undefined }),
    (error: unknown) => ({ did: undefined, error }),
  )
  let dnsError: unknown
  try {
    const did = await lookupDns(handle, options.resolveTxt ?? systemResolveTxt(timeoutMs))
    if (did) {
      abortHttp.abort()
      await httpAttempt
      return did
    }
  } catch (error) {
    dnsError = error
  }
  const http = await httpAttempt
  if (http.did) return http.did
  if (dnsError || http.error) {
    throw new IdentityUnavailableError(handle, 'DNS and HTTP lookups failed', {
      cause: http.error ?? dnsError,
    })
  }
  throw new IdentityNotFoundError(handle, 'no _atproto TXT record and no /.well-known/atproto-did')
}

function systemResolveTxt(timeoutMs: number): ResolveTxt {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 2 })
  return (hostname) => resolver.resolveTxt(hostname)
}

async function lookupDns(handle: string, resolveTxt: ResolveTxt): Promise<string | undefined> {
  let records: string[][]
  try {
    records = await resolveTxt(`_atproto.${handle}`)
  } catch (error) {
    if (DNS_NOT_FOUND.has((error as NodeJS.ErrnoException).code ?? '')) return undefined
    throw error
  }
  const dids = records
    .map((chunks) => chunks.join(''))
    .filter((record) => record.startsWith('did='))
    .map((record) => record.slice(4).trim())
  // Several different answers are ambiguous: trust none (as the atproto spec asks).
  const unique = [...new Set(dids)]
  if (unique.length !== 1) return undefined
  return isAtprotoDid(unique[0]) ? unique[0] : undefined
}

/**
 * Resolves to the DID, or to undefined when there is none to be had (no server, refused,
 * 404, not a DID). Throws only for what may pass: timeouts and 5xx answers.
 */
async function lookupWellKnown(
  handle: string,
  options: HandleLookupOptions,
  abort: AbortSignal,
  timeoutMs: number,
): Promise<string | undefined> {
  const url = new URL(`https://${handle}/.well-known/atproto-did`)
  if (options.mode === 'dev' && options.wellKnown) {
    if (options.wellKnown.protocol) url.protocol = options.wellKnown.protocol
    if (options.wellKnown.port) url.port = String(options.wellKnown.port)
  }
  const timeout = AbortSignal.timeout(timeoutMs)
  let response: Response
  try {
    response = await options.fetch(url, {
      headers: { accept: 'text/plain' },
      signal: AbortSignal.any([abort, timeout]),
    })
  } catch {
    if (timeout.aborted) throw new Error(`timeout fetching ${url.href}`)
    // DNS-only handles usually have no web server at all: that is "no answer".
    return undefined
  }
  if (!response.ok) {
    await response.body?.cancel()
    if (response.status >= 500) throw new Error(`HTTP ${response.status} from ${url.href}`)
    return undefined
  }
  const text = await readBoundedText(response, 2048).catch(() => '')
  const did = text.split('\n')[0]?.trim()
  return did && isAtprotoDid(did) ? did : undefined
}

async function lookupViaXrpc(
  handle: string,
  service: string,
  options: HandleLookupOptions,
): Promise<string> {
  const url = new URL('/xrpc/com.atproto.identity.resolveHandle', service)
  url.searchParams.set('handle', handle)
  let response: Response
  try {
    response = await options.fetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 5000) })
  } catch (cause) {
    throw new IdentityUnavailableError(handle, 'handle resolver unreachable', { cause })
  }
  if (response.status === 400 || response.status === 404) {
    await response.body?.cancel()
    throw new IdentityNotFoundError(handle, 'the handle resolver does not know this handle')
  }
  if (!response.ok) {
    await response.body?.cancel()
    throw new IdentityUnavailableError(handle, `handle resolver answered ${response.status}`)
  }
  const body = (await readBoundedJson(response, 4096)) as { did?: unknown }
  if (typeof body.did !== 'string' || !isAtprotoDid(body.did)) {
    throw new IdentityUnavailableError(handle, 'handle resolver answered no DID')
  }
  return body.did
}
