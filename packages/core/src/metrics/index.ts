/**
 * What the services share for operations: Prometheus metrics (prom-client) served on their
 * own listener, HTTP instrumentation of a fastify app, the liveness and readiness routes,
 * and request ids (accepted from a proxy or the AppView, passed on to the hold).
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { type Kysely, sql } from 'kysely'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { CacheCounter } from '../identity/cache.ts'

export { Counter, Gauge, Histogram, Registry }

/** A service's metrics: prom-client's process metrics and the HTTP ones, in one registry. */
export class ServiceMetrics {
  readonly registry = new Registry()
  readonly requests: Counter<'method' | 'route' | 'status'>
  readonly duration: Histogram<'method' | 'route'>
  readonly bytesIn: Counter<'route'>
  readonly bytesOut: Counter<'route'>
  readonly cacheLookups: Counter<'cache' | 'result'>

  #processMetrics = false

  constructor() {
    const registers = [this.registry]
    this.requests = new Counter({
      name: 'atcr_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    })
    this.duration = new Histogram({
      name: 'atcr_http_request_duration_seconds',
      help: 'Time from a request to its response sent (blob uploads and pulls included), by route pattern.',
      labelNames: ['method', 'route'],
      buckets: [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600],
      registers,
    })
    this.bytesIn = new Counter({
      name: 'atcr_http_received_bytes_total',
      help: 'Bytes of HTTP requests received (bodies, and headers where they were read apart), by route pattern.',
      labelNames: ['route'],
      registers,
    })
    this.bytesOut = new Counter({
      name: 'atcr_http_sent_bytes_total',
      help: 'Bytes sent on HTTP connections (headers and bodies), by route pattern.',
      labelNames: ['route'],
      registers,
    })
    this.cacheLookups = new Counter({
      name: 'atcr_cache_lookups_total',
      help: 'Lookups in the in-memory caches, by cache name and result (hit: a fresh value answered).',
      labelNames: ['cache', 'result'],
      registers,
    })
  }

  /** The hit and miss counter of the cache named `cache` (both start at 0 on /metrics). */
  cacheCounter(cache: string): CacheCounter {
    const hits = this.cacheLookups.labels({ cache, result: 'hit' })
    const misses = this.cacheLookups.labels({ cache, result: 'miss' })
    hits.inc(0)
    misses.inc(0)
    return { hit: () => hits.inc(), miss: () => misses.inc() }
  }

  /** Adds prom-client's process and Node metrics (CPU, memory, event loop, GC), once. */
  collectProcessMetrics(): void {
    if (this.#processMetrics) return
    this.#processMetrics = true
    collectDefaultMetrics({ register: this.registry })
  }

  /** A gauge read at each scrape: one sample per label set `read` answers, none if empty. */
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[],
    read: () => GaugeSample[] | Promise<GaugeSample[]>,
  ): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset()
        for (const { labels, value } of await read()) this.set(labels ?? {}, value)
      },
    })
  }
}

export interface GaugeSample {
  labels?: Record<string, string>
  value: number
}

interface Started {
  at: bigint
  read: number
  written: number
}
const started = new WeakMap<FastifyRequest, Started>()

/**
 * Counts every request of `app` by route pattern (never the raw URL: no unbounded label
 * values) and status, with its duration and bytes: received, the request's Content-Length
 * or what its connection read meanwhile (a streamed body), whichever is more; sent, what
 * its connection wrote. `routeOf` names requests of wildcard routes more finely.
 */
export function instrument(
  app: FastifyInstance,
  metrics: ServiceMetrics,
  routeOf: (request: FastifyRequest) => string | undefined = () => undefined,
): void {
  app.addHook('onRequest', async (request) => {
    const socket = request.raw.socket
    started.set(request, {
      at: process.hrtime.bigint(),
      read: socket.bytesRead,
      written: socket.bytesWritten,
    })
  })
  app.addHook('onResponse', async (request, reply) => {
    const start = started.get(request)
    if (!start) return
    const route = routeOf(request) ?? request.routeOptions.url ?? 'unmatched'
    const { method } = request
    const seconds = Number(process.hrtime.bigint() - start.at) / 1e9
    metrics.requests.inc({ method, route, status: String(reply.statusCode) })
    metrics.duration.observe({ method, route }, seconds)
    const socket = request.raw.socket
    const declared = Number(request.headers['content-length'] ?? 0) || 0
    metrics.bytesIn.inc({ route }, Math.max(declared, socket.bytesRead - start.read))
    metrics.bytesOut.inc({ route }, Math.max(0, socket.bytesWritten - start.written))
  })
}

export interface MetricsListener {
  /** `http://host:port`, the bound address. */
  url: string
  close(): Promise<void>
}

/** Serves GET /metrics on its own listener, apart from the public API. */
export async function startMetricsListener(
  metrics: ServiceMetrics,
  options: { host: string; port: number },
): Promise<MetricsListener> {
  metrics.collectProcessMetrics()
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n')
      return
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(error.message),
    )
  })
  server.listen(options.port, options.host)
  await once(server, 'listening')
  const { address, port } = server.address() as AddressInfo
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A named readiness check: resolves when the dependency works, throws why it does not. */
export type ReadinessCheck = () => Promise<unknown>

const CHECK_TIMEOUT_MS = 5000

/**
 * GET /healthz: the process answers (liveness; nothing else is checked, so a restart is
 * never triggered by a dependency). GET /readyz: every check within 5 s, 200 when all pass,
 * else 503 naming what failed (take the instance out of the load balancer).
 */
export function registerHealthRoutes(
  app: FastifyInstance,
  checks: Record<string, ReadinessCheck>,
): void {
  app.get('/healthz', { logLevel: 'warn' }, async () => ({ status: 'ok' }))
  app.get('/readyz', { logLevel: 'warn' }, async (_request, reply) => {
    const results: Record<string, string> = {}
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS)
          results[name] = 'ok'
        } catch (error) {
          results[name] = (error as Error).message || String(error)
        }
      }),
    )
    const ready = Object.values(results).every((r) => r === 'ok')
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ok' : 'unavailable', checks: results })
  })
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The database answers a trivial query. */
export async function databaseAnswers<Schema>(db: Kysely<Schema>): Promise<void> {
  await sql`select 1`.execute(db)
}

/** fastify's trustProxy from config: the listed proxies, or none (never every client). */
export function trustedProxies(list: readonly string[]): string[] | false {
  return list.length > 0 ? [...list] : false
}

/** A GET of `url` that must answer below 500 (the service is up, whatever it thinks of us). */
export async function answers(
  fetch: (url: string, init?: RequestInit) => Promise<Response>,
  url: string,
): Promise<void> {
  const response = await fetch(url, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) })
  await response.body?.cancel()
  if (response.status >= 500) throw new Error(`${url} answered ${response.status}`)
}

export const REQUEST_ID_HEADER = 'x-request-id'
const REQUEST_ID_RE = /^[\w.:-]{1,128}$/
const requestIds = new AsyncLocalStorage<string>()

/**
 * fastify's genReqId: the caller's X-Request-Id when well formed (a proxy's, or the
 * AppView's on its calls to a hold, so both logs carry one id), else a new UUID.
 */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers[REQUEST_ID_HEADER]
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID()
}

/**
 * Every request of `app` runs with its id as the current one (for `withRequestId`), and
 * answers with it in X-Request-Id.
 */
export function propagateRequestIds(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header(REQUEST_ID_HEADER, request.id)
    requestIds.run(request.id, done)
  })
}

type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>
/** The guarded fetch's other requests, as far as the id is concerned (method syntax: any init with headers). */
interface HasOtherRequests {
  upload?(url: string | URL, init: { headers: Headers }): Promise<Response>
  request?(url: string | URL, init: { headers?: RequestInit['headers'] }): Promise<unknown>
}

/** The headers with the current request's id added (X-Request-Id), or null outside one. */
function withCurrentId(headers: RequestInit['headers']): Headers | null {
  const id = requestIds.getStore()
  if (id === undefined) return null
  const tagged = new Headers(headers)
  if (!tagged.has(REQUEST_ID_HEADER)) tagged.set(REQUEST_ID_HEADER, id)
  return tagged
}

/**
 * `fetch` (and its streamed `upload` and small `request`, when it has them) that sends the
 * current request's id (X-Request-Id) with every outbound request.
 */
export function withRequestId<F extends FetchFn & HasOtherRequests>(fetch: F): F {
  const wrapped = (input: string | URL | Request, init: RequestInit = {}) => {
    const headers = withCurrentId(init.headers ?? (input instanceof Request ? input.headers : {}))
    return fetch(input, headers ? { ...init, headers } : init)
  }
  const extra: HasOtherRequests = {}
  const upload = fetch.upload?.bind(fetch)
  if (upload) {
    extra.upload = (url, init) =>
      upload(url, { ...init, headers: withCurrentId(init.headers) ?? init.headers })
  }
  const request = fetch.request?.bind(fetch)
  if (request) {
    extra.request = (url, init) =>
      request(url, { ...init, headers: withCurrentId(init.headers) ?? init.headers })
  }
  return Object.assign(wrapped, fetch, extra) as F
}
