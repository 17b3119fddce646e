import type { FastifyInstance } from 'fastify'
import { RepoNotFoundError } from '../../../../errors.ts'
import { assertOwnDid, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
}

/** com.atproto.sync.getLatestCommit: `{cid, rev}` of the head. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getLatestCommit',
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
      return { cid: head.cid, rev: head.rev }
    },
  )
}
