import type { FastifyInstance } from 'fastify'
import {
  assertNsid,
  assertOwnDid,
  assertRecordKey,
  CAR_MEDIA_TYPE,
  type RepoApiContext,
} from '../../../context.ts'

interface Query {
  did: string
  collection: string
  rkey: string
}

/**
 * com.atproto.sync.getRecord: a CAR with the head commit, the MST nodes on the path to
 * the key and the record. For a missing record the same path proves its absence, as a
 * PDS answers.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getRecord',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did', 'collection', 'rkey'],
          properties: {
            did: { type: 'string' },
            collection: { type: 'string' },
            rkey: { type: 'string' },
          },
        },
      },
    },
    async (request, reply) => {
      const { did, collection, rkey } = request.query
      assertOwnDid(ctx, did)
      assertNsid(collection)
      assertRecordKey(rkey)
      const car = await ctx.repo.reader.recordProofCar(collection, rkey)
      return reply
        .type(CAR_MEDIA_TYPE)
        .send(Buffer.from(car.buffer, car.byteOffset, car.byteLength))
    },
  )
}
