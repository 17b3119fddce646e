import type { FastifyInstance } from 'fastify'
import type { RepoApiContext } from './context.ts'

/** GET /xrpc/_health: `{version}`. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get('/xrpc/_health', async () => ({ version: ctx.version }))
}
