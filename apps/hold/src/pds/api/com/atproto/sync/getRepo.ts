import { Readable } from 'node:stream'
import { isValidTid } from '@atproto/syntax'
import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import { assertOwnDid, CAR_MEDIA_TYPE, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
  since?: string
}

/**
 * com.atproto.sync.getRepo: the repo as a CAR streamed from a consistent snapshot; with
 * `since` (a rev), only the blocks added after it.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getRepo',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did'],
          properties: { did: { type: 'string' }, since: { type: 'string' } },
        },
      },
    },
    async (request, reply) => {
      const { did, since } = request.query
      assertOwnDid(ctx, did)
      if (since !== undefined && !isValidTid(since)) throw invalidRequest(`invalid rev: ${since}`)
      const car = ctx.repo.reader.exportCar({ since })
      reply.raw.once('close', () => car.close())
      return reply.type(CAR_MEDIA_TYPE).send(Readable.from(car, { objectMode: false }))
    },
  )
}
