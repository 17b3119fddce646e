import type { FastifyInstance } from 'fastify'
import type { RepoApiContext } from '../../../context.ts'

interface Query {
  limit: number
  cursor?: string
}

/**
 * com.atproto.sync.listRepos: the one repo. It fits on the first page, so no cursor is
 * ever returned and a request with one gets the empty page after it.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.listRepos',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 500 },
            cursor: { type: 'string' },
          },
        },
      },
    },
    async (request) => {
      const head = request.query.cursor === undefined ? await ctx.repo.reader.getHead() : null
      return {
        repos: head ? [{ did: ctx.did, head: head.cid, rev: head.rev, active: true }] : [],
      }
    },
  )
}
