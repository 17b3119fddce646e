import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import type { RepoApiContext } from '../../../context.ts'

interface Query {
  handle: string
}

/** com.atproto.identity.resolveHandle: only the hold's own handle resolves. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.identity.resolveHandle',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['handle'],
          properties: { handle: { type: 'string', minLength: 1 } },
        },
      },
    },
    async (request) => {
      if (ctx.handle === null || request.query.handle.toLowerCase() !== ctx.handle) {
        throw invalidRequest('Unable to resolve handle', 'HandleNotFound')
      }
      return { did: ctx.did }
    },
  )
}
