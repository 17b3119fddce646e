// The AppView's HTTP surface: token auth under /auth and the OCI Distribution API under /v2
// (errors: the OCI JSON envelope, one handler), the device flow's JSON endpoints, and the
// web pages (sign-in, device approval, settings; errors as HTML).
import cookie from '@fastify/cookie'
import csrf from '@fastify/csrf-protection'
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { registerDeviceRoutes } from './auth/device-routes.ts'
import { registerAuthRoutes } from './auth/index.ts'
import type { AppViewContext } from './context.ts'
import { ociErrorHandler } from './oci-error-handler.ts'
import { registerRegistryRoutes } from './registry/index.ts'
import { registerWebRoutes } from './web/routes.ts'

export async function buildServer(ctx: AppViewContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.logger.child({ subsystem: 'http' }) as FastifyBaseLogger,
    trustProxy: true,
    // Manifests are read whole (bounded by registry.max_manifest_size); blobs stream.
    bodyLimit: ctx.config.registry.max_manifest_size,
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
