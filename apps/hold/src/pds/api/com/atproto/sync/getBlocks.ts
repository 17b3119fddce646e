import { type Cid, parseCidSafe } from '@atproto/lex-data'
import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import { assertOwnDid, CAR_MEDIA_TYPE, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
  cids: string[]
}

/** As many CIDs as one request may name (a URL of about 60 KiB). */
const MAX_CIDS = 1000

/**
 * com.atproto.sync.getBlocks: the named blocks of the repo's block store as a CAR with
 * no root. If any is missing the whole request fails, naming them, as the reference PDS
 * answers.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getBlocks',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did', 'cids'],
          properties: {
            did: { type: 'string' },
            cids: { type: 'array', items: { type: 'string' }, maxItems: MAX_CIDS },
          },
        },
      },
    },
    async (request, reply) => {
      const { did } = request.query
      assertOwnDid(ctx, did)
      const cids: Cid[] = []
      for (const text of request.query.cids) {
        const cid = parseCidSafe(text)
        if (!cid) throw invalidRequest(`invalid cid: ${text}`)
        cids.push(cid)
      }
      const { car, missing } = await ctx.repo.reader.blocksCar(cids)
      if (missing.length > 0) throw invalidRequest(`Could not find cids: ${missing.join(',')}`)
      return reply
        .type(CAR_MEDIA_TYPE)
        .send(Buffer.from(car.buffer, car.byteOffset, car.byteLength))
    },
  )
}
