// The AppView's HTTP surface: token auth and login under /auth, the OCI Distribution API
// under /v2 (each with its own error envelope).
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { registerAuthRoutes } from './auth/index.ts'
import type { AppViewContext } from './context.ts'
import { registerRegistryRoutes } from './registry/index.ts'

export async function buildServer(ctx: AppViewContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.logger.child({ subsystem: 'http' }) as FastifyBaseLogger,
    trustProxy: true,
    // Manifests are read whole (bounded by registry.max_manifest_size); blobs stream.
    bodyLimit: ctx.config.registry.max_manifest_size,
  })
  await registerAuthRoutes(app, ctx)
  await registerRegistryRoutes(app, ctx)
  return app
}
