// The SSRF guard. Ours rather than @atproto-labs/fetch-node's safeFetchWrap (the reference
// PDS's), which is all or nothing: with protection on it refuses http and every non-unicast
// address, with it off no address is checked, so a dev stack (loopback, docker networks)
// would run unguarded, where ours still refuses link-local (cloud metadata). It also takes
// neither an operator's trusted origins (a PLC mirror on a private network) nor an injected
// DNS lookup (tests). The address rules are ipaddr.js's ranges; the check runs in undici's
// connector lookup, as there.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns'
import { isIP, type LookupFunction } from 'node:net'
import ipaddr from 'ipaddr.js'
import { Agent, buildConnector, type Dispatcher, Dispatcher1Wrapper } from 'undici'
import { readBoundedChunks } from './body.ts'
import type { IdentityMode } from './mode.ts'
import { createStreamUpload, type StreamUpload } from './stream-upload.ts'

/**
 * The `fetch` every outbound request of ATCR goes through. Same call shape as the global
 * fetch (and it returns global `Response` objects), plus `close()` for its connection pool.
 */
export type GuardedFetch = ((
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>) & {
  readonly mode: IdentityMode
  /** A request with a Node stream as its body (a blob passed on), under the same guard. */
  readonly upload: StreamUpload
  /** A small request whose answer is read whole, under the same guard. */
  readonly request: SmallRequest
  close(): Promise<void>
}

export interface SmallRequestInit {
  method: string
  headers?: Headers | Record<string, string>
  body?: string
  signal?: AbortSignal
  /** The most answer bytes read; more fails with ResponseTooLargeError. */
  maxBytes: number
}

/** The status and UTF-8 body of an answer; a redirect is an answer, not followed. */
export interface SmallAnswer {
  status: number
  text: string
}

/**
 * A request through undici's dispatcher API rather than fetch: no Request, Headers or web
 * streams per call, a third of fetch's CPU (bench/README.md, round 8). For the JSON calls
 * made on every pull and push.
 */
export type SmallRequest = (url: string | URL, init: SmallRequestInit) => Promise<SmallAnswer>

/** The subset of a fetch this package calls; a `GuardedFetch` satisfies it. */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

/** `dns.lookup`'s callback form, always asked for every address (`all: true`). */
export type LookupAll = (
  hostname: string,
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void

export type SsrfBlockReason =
  | 'protocol'
  | 'loopback'
  | 'private'
  | 'linkLocal'
  | 'uniqueLocal'
  | 'carrierGradeNat'
  | 'multicast'
  | 'unspecified'
  | 'reserved'
  | 'invalidAddress'

export class SsrfBlockedError extends Error {
  readonly code = 'SsrfBlocked'
  readonly url: string
  readonly reason: SsrfBlockReason
  /** The refused IP, when the refusal is about an address. */
  readonly address: string | undefined
  constructor(url: string, reason: SsrfBlockReason, address?: string) {
    const detail = address ? `address ${address} is ${reason}` : `${reason} not allowed`
    super(`outbound request to ${url} refused: ${detail}`)
    this.name = 'SsrfBlockedError'
    this.url = url
    this.reason = reason
    this.address = address
  }
}

export interface GuardedFetchOptions {
  mode: IdentityMode
  /**
   * Origins (`scheme://host:port`) exempt from both the scheme and the address rules,
   * for an operator's own internal services (e.g. a PLC mirror at `http://plc:2582`).
   * Redirects away from them are checked as usual.
   */
  trustedOrigins?: readonly string[]
  /** Name resolution; defaults to `dns.lookup`. Tests inject one to avoid real DNS. */
  lookup?: LookupAll
  /** Redirect hops followed when `redirect: 'follow'` (the default); default 5. */
  maxRedirects?: number
  /** TCP+TLS connect timeout; default 10 s. */
  connectTimeoutMs?: number
  /** Time to wait for response headers; default 30 s. */
  headersTimeoutMs?: number
}

const PRODUCTION_ALLOWED = new Set(['unicast'])
// A local stack talks to loopback and private networks (docker, LAN). Link-local stays
// refused even here: it is where cloud metadata services live, never a registry peer.
const DEV_ALLOWED = new Set(['unicast', 'loopback', 'private', 'uniqueLocal', 'carrierGradeNat'])

const RANGE_REASONS: Record<string, SsrfBlockReason> = {
  loopback: 'loopback',
  private: 'private',
  linkLocal: 'linkLocal',
  uniqueLocal: 'uniqueLocal',
  carrierGradeNat: 'carrierGradeNat',
  multicast: 'multicast',
  broadcast: 'multicast',
  unspecified: 'unspecified',
}

/**
 * Why `ip` must not be contacted in `mode`, or null when it may. IPv4-mapped IPv6
 * addresses are judged as the IPv4 address they carry; every range ipaddr.js knows other
 * than plain unicast (6to4, Teredo, NAT64, documentation, ...) is refused in production.
 */
export function addressBlockReason(ip: string, mode: IdentityMode): SsrfBlockReason | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6
  try {
    parsed = ipaddr.process(stripBrackets(ip))
  } catch {
    return 'invalidAddress'
  }
  const range = parsed.range()
  const allowed = mode === 'production' ? PRODUCTION_ALLOWED : DEV_ALLOWED
  if (allowed.has(range)) return null
  return RANGE_REASONS[range] ?? 'reserved'
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

function originOf(protocol: string, hostname: string, port: string): string {
  const defaultPort = protocol === 'https:' ? '443' : protocol === 'http:' ? '80' : ''
  const portPart = port && port !== defaultPort ? `:${port}` : ''
  return `${protocol}//${hostname.toLowerCase()}${portPart}`
}

const defaultLookup: LookupAll = (hostname, callback) => {
  dnsLookup(hostname, { all: true } satisfies LookupAllOptions, callback)
}

/**
 * Creates the SSRF-guarded fetch. Checks, in order: the scheme of every URL (https only in
 * production), IP literals before any socket exists, and for host names every address DNS
 * returns, inside the connection's own lookup, so the address checked is the address
 * connected to (no DNS rebinding window). Redirects are followed here, hop by hop, so each
 * hop passes the same checks; `authorization` and `cookie` headers are dropped when a
 * redirect leaves the origin.
 */
export function createGuardedFetch(options: GuardedFetchOptions): GuardedFetch {
  const { mode } = options
  const maxRedirects = options.maxRedirects ?? 5
  const lookupAll = options.lookup ?? defaultLookup
  const trusted = new Set(
    (options.trustedOrigins ?? []).map((origin) => {
      const url = new URL(origin)
      return originOf(url.protocol, url.hostname, url.port)
    }),
  )
  const isTrusted = (protocol: string, hostname: string, port: string) =>
    trusted.has(originOf(protocol, hostname, port))

  const check = (url: URL): void => {
    if (isTrusted(url.protocol, url.hostname, url.port)) return
    const protocolOk = url.protocol === 'https:' || (mode === 'dev' && url.protocol === 'http:')
    if (!protocolOk) throw new SsrfBlockedError(url.href, 'protocol')
    const host = stripBrackets(url.hostname)
    if (isIP(host)) {
      const reason = addressBlockReason(host, mode)
      if (reason) throw new SsrfBlockedError(url.href, reason, host)
    }
  }

  const guardedLookup: LookupFunction = (hostname, lookupOptions, callback) => {
    lookupAll(hostname, (error, addresses) => {
      if (error) return callback(error, [])
      const wantFamily = Number(lookupOptions.family) || 0
      const usable = addresses.filter((a) => wantFamily === 0 || a.family === wantFamily)
      for (const entry of usable) {
        // One forbidden answer refuses the name: a mixed answer is how rebinding starts.
        const reason = addressBlockReason(entry.address, mode)
        if (reason) {
          return callback(new SsrfBlockedError(hostname, reason, entry.address), [])
        }
      }
      if (usable.length === 0) {
        const notFound: NodeJS.ErrnoException = new Error(`no address for ${hostname}`)
        notFound.code = 'ENOTFOUND'
        return callback(notFound, [])
      }
      if (lookupOptions.all) return callback(null, usable)
      const first = usable[0]!
      callback(null, first.address, first.family)
    })
  }

  const timeout = options.connectTimeoutMs ?? 10_000
  const headersTimeout = options.headersTimeoutMs ?? 30_000
  const guardedConnector = buildConnector({ timeout, lookup: guardedLookup })
  const plainConnector = buildConnector({ timeout })
  const agent = new Agent({
    headersTimeout,
    connect: (connectOptions, callback) => {
      const { protocol, hostname, port } = connectOptions
      if (isTrusted(protocol, hostname, port)) return plainConnector(connectOptions, callback)
      const where = originOf(protocol, hostname, port)
      if (!(protocol === 'https:' || (mode === 'dev' && protocol === 'http:'))) {
        return callback(new SsrfBlockedError(where, 'protocol'), null)
      }
      const host = stripBrackets(hostname)
      if (isIP(host)) {
        const reason = addressBlockReason(host, mode)
        if (reason) return callback(new SsrfBlockedError(where, reason, host), null)
      }
      guardedConnector(connectOptions, callback)
    },
  })
  // Node's built-in fetch speaks undici's older dispatcher contract: wrap the agent so
  // the global fetch (and its global Response class) can use it.
  const dispatcher = new Dispatcher1Wrapper(agent)

  const guarded = async (input: string | URL | Request, init: RequestInit = {}) => {
    const request = input instanceof Request ? input : undefined
    let url = new URL(request ? request.url : input.toString())
    let method = (init.method ?? request?.method ?? 'GET').toUpperCase()
    const headers = new Headers(init.headers ?? request?.headers)
    let body: RequestInit['body'] = init.body ?? request?.body
    const signal = init.signal ?? request?.signal
    const redirectMode = init.redirect ?? request?.redirect ?? 'follow'

    for (let hop = 0; ; hop++) {
      check(url)
      let response: Response
      try {
        response = await fetch(url, {
          ...init,
          method,
          headers,
          body,
          signal,
          redirect: 'manual',
          ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
          dispatcher,
        } as RequestInit)
      } catch (error) {
        throw findSsrfError(error) ?? error
      }
      const location = response.headers.get('location')
      if (!REDIRECT_STATUSES.has(response.status) || location === null) return response
      if (redirectMode === 'manual') return response
      await response.body?.cancel()
      if (redirectMode === 'error') throw new TypeError(`unexpected redirect from ${url.href}`)
      if (hop >= maxRedirects) throw new TypeError(`too many redirects from ${url.href}`)
      const next = new URL(location, url)
      const becomesGet =
        response.status === 303
          ? method !== 'HEAD'
          : (response.status === 301 || response.status === 302) && method === 'POST'
      if (becomesGet) {
        method = 'GET'
        body = undefined
        headers.delete('content-type')
        headers.delete('content-length')
      } else if (body instanceof ReadableStream) {
        throw new TypeError(`cannot repeat a streamed body on redirect from ${url.href}`)
      }
      if (next.origin !== url.origin) {
        headers.delete('authorization')
        headers.delete('cookie')
      }
      url = next
    }
  }

  const request: SmallRequest = async (input, init) => {
    const url = new URL(input)
    check(url)
    let answer: Dispatcher.ResponseData
    try {
      answer = await agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: init.method as Dispatcher.HttpMethod,
        headers: init.headers instanceof Headers ? Object.fromEntries(init.headers) : init.headers,
        body: init.body,
        signal: init.signal,
      })
    } catch (error) {
      throw findSsrfError(error) ?? error
    }
    const text = await readBoundedChunks(answer.body, init.maxBytes, url.href)
    return { status: answer.statusCode, text }
  }

  const upload = createStreamUpload({
    check,
    lookupFor: (url) => (isTrusted(url.protocol, url.hostname, url.port) ? null : guardedLookup),
    explain: (error) => findSsrfError(error) ?? error,
    connectTimeoutMs: timeout,
    headersTimeoutMs: headersTimeout,
  })
  return Object.assign(guarded, {
    mode,
    upload,
    request,
    close: async () => {
      upload.close()
      await agent.close()
    },
  })
}

/** Why a client must not be sent to a URL, or null when it may. */
export type RedirectCheck = (url: URL) => Promise<SsrfBlockReason | null>

/**
 * Judges where a client may be sent in `mode` (a redirect passed on, not a request of
 * ours): the guarded fetch's scheme and address rules, with the host name resolved and
 * every address it has judged. No trusted origins: an address the service may reach on
 * its own network is not one to hand to the public.
 */
export function createRedirectCheck(options: {
  mode: IdentityMode
  lookup?: LookupAll
}): RedirectCheck {
  const { mode } = options
  const lookupAll = options.lookup ?? defaultLookup
  return async (url) => {
    if (!(url.protocol === 'https:' || (mode === 'dev' && url.protocol === 'http:'))) {
      return 'protocol'
    }
    const host = stripBrackets(url.hostname)
    if (isIP(host)) return addressBlockReason(host, mode)
    const addresses = await new Promise<LookupAddress[] | null>((resolve) => {
      lookupAll(host, (error, found) => resolve(error ? null : found))
    })
    if (!addresses || addresses.length === 0) return 'invalidAddress'
    for (const entry of addresses) {
      const reason = addressBlockReason(entry.address, mode)
      if (reason) return reason
    }
    return null
  }
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])

/** undici reports connect failures as `TypeError: fetch failed` with the cause inside. */
function findSsrfError(error: unknown): SsrfBlockedError | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if (current instanceof SsrfBlockedError) return current
    current = current.cause
  }
  return undefined
}
