// The AppView's HTTP surface: token auth under /auth and the OCI Distribution API under /v2
// (errors: the OCI JSON envelope, one handler), the device flow's JSON endpoints, and the
// web pages (sign-in, device approval, settings; errors as HTML).

import { closeEarlyAnswersGently } from '@atcr/core/lifecycle'
import {
  answers,
  databaseAnswers,
  instrument,
  propagateRequestIds,
  registerHealthRoutes,
  requestIdOf,
  trustedProxies,
} from '@atcr/core/metrics'
import cookie from '@fastify/cookie'
import csrf from '@fastify/csrf-protection'
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import { registerDeviceRoutes } from './auth/device-routes.ts'
import { registerAuthRoutes } from './auth/index.ts'
import type { AppViewContext } from './context.ts'
import { ociErrorHandler } from './oci-error-handler.ts'
import { registerRegistryRoutes } from './registry/index.ts'
import { registerWebRoutes } from './web/routes.ts'

export async function buildServer(ctx: AppViewContext): Promise<FastifyInstance> {
  const { server } = ctx.config
  const app = Fastify({
    loggerInstance: ctx.logger.child({ subsystem: 'http' }) as FastifyBaseLogger,
    trustProxy: trustedProxies(server.trust_proxy),
    genReqId: requestIdOf,
    // Manifests are read whole (bounded by registry.max_manifest_size); blobs stream.
    bodyLimit: ctx.config.registry.max_manifest_size,
  })
  propagateRequestIds(app)
  closeEarlyAnswersGently(app)
  instrument(app, ctx.metrics, ociRouteOf)
  registerIngestMetrics(ctx)
  ctx.metrics.gauge(
    'atcr_upload_sessions',
    'Blob upload sessions open now (not expired), of every AppView sharing the database.',
    [],
    async () => [{ value: await ctx.registry.uploads.countOpen() }],
  )
  registerHealthRoutes(app, {
    database: () => databaseAnswers(ctx.db.db),
    plc_directory: () =>
      answers(ctx.fetch, new URL('/_health', ctx.config.identity.plc_directory_url).href),
  })
  // Limits are declared per route (config.rateLimit) or taken with app.createRateLimit.
  await app.register(rateLimit, { global: false })
  const onError = ociErrorHandler(ctx)
  await app.register(async (scope) => {
    scope.setErrorHandler(onError)
    registerAuthRoutes(scope, ctx)
  })
  await app.register(async (scope) => {
    scope.setErrorHandler(onError)
    registerRegistryRoutes(scope, ctx)
  })
  await app.register(cookie)
  await app.register(csrf, {
    cookieKey: 'atcr_csrf',
    cookieOpts: {
      path: '/',
      httpOnly: true,
      sameSite: 'lax',
      secure: new URL(ctx.config.server.base_url).protocol === 'https:',
    },
  })
  await app.register(async (scope) => registerDeviceRoutes(scope, ctx))
  await app.register(async (scope) => registerWebRoutes(scope, ctx))
  return app
}

/** The OCI API is one wildcard route: its requests are labelled by endpoint, names left out. */
const OCI_ENDPOINTS: [RegExp, string][] = [
  [/^\/v2\/?$/, '/v2/'],
  [/\/blobs\/uploads(\/[^/]*)?$/, '/v2/<name>/blobs/uploads/'],
  [/\/blobs\/[^/]+$/, '/v2/<name>/blobs/<digest>'],
  [/\/manifests\/[^/]+$/, '/v2/<name>/manifests/<reference>'],
  [/\/tags\/list$/, '/v2/<name>/tags/list'],
  [/\/referrers\/[^/]+$/, '/v2/<name>/referrers/<digest>'],
]

function ociRouteOf(request: FastifyRequest): string | undefined {
  if (request.routeOptions.url !== '/v2/*') return undefined
  const path = request.url.split('?')[0]!
  return OCI_ENDPOINTS.find(([pattern]) => pattern.test(path))?.[1] ?? '/v2/*'
}

/** The indexer's state per source, read at each scrape. */
function registerIngestMetrics(ctx: AppViewContext): void {
  const { ingest, metrics } = ctx
  metrics.gauge(
    'atcr_ingest_consuming',
    'Whether this instance consumes the ingest sources now (it holds the lease).',
    [],
    () => [{ value: ingest.consuming ? 1 : 0 }],
  )
  metrics.gauge(
    'atcr_ingest_lag_seconds',
    'How old the last event applied from each source was when it was applied.',
    ['source'],
    () =>
      ingest
        .status()
        .flatMap((s) =>
          s.lagMs === null ? [] : [{ labels: { source: s.source }, value: s.lagMs / 1000 }],
        ),
  )
  metrics.gauge(
    'atcr_ingest_errors',
    'Errors met consuming each source since the start (connections, invalid events).',
    ['source'],
    () => ingest.status().map((s) => ({ labels: { source: s.source }, value: s.errors })),
  )
}
