// The AppView's HTTP surface: token auth under /auth and the OCI Distribution API under /v2,
// both answering errors with the OCI JSON envelope through one handler.
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { registerAuthRoutes } from './auth/index.ts'
import type { AppViewContext } from './context.ts'
import { ociErrorHandler } from './oci-error-handler.ts'
import { registerRegistryRoutes } from './registry/index.ts'

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
  return app
}
