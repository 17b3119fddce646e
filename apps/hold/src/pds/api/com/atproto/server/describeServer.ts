import type { FastifyInstance } from 'fastify'
import type { RepoApiContext } from '../../../context.ts'

/** com.atproto.server.describeServer: the hold's DID; it hosts no user accounts. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get('/xrpc/com.atproto.server.describeServer', async () => ({
    did: ctx.did,
    availableUserDomains: [],
    ...(ctx.describeServer?.links ? { links: ctx.describeServer.links } : {}),
    ...(ctx.describeServer?.contact ? { contact: ctx.describeServer.contact } : {}),
  }))
}
