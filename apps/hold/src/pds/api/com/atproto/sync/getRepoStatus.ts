import type { FastifyInstance } from 'fastify'
import { RepoNotFoundError } from '../../../../errors.ts'
import { assertOwnDid, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
}

/** com.atproto.sync.getRepoStatus: the hold's repo is always active. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getRepoStatus',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did'],
          properties: { did: { type: 'string' } },
        },
      },
    },
    async (request) => {
      assertOwnDid(ctx, request.query.did)
      const head = await ctx.repo.reader.getHead()
      if (!head) throw new RepoNotFoundError(ctx.did)
      return { did: ctx.did, active: true, rev: head.rev }
    },
  )
}
