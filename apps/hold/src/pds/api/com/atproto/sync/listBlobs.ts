import { isValidTid } from '@atproto/syntax'
import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import { assertOwnDid, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
  since?: string
  limit: number
  cursor?: string
}

/**
 * com.atproto.sync.listBlobs: the CIDs of the blobs the hold's records name (atproto blobs
 * and, as raw CIDs, the OCI blobs of layer records), in CID order. As from the reference
 * PDS, a non-empty page carries its last CID as the cursor; `since` keeps the blobs of
 * records written after that rev.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.listBlobs',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did'],
          properties: {
            did: { type: 'string' },
            since: { type: 'string' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 500 },
            cursor: { type: 'string' },
          },
        },
      },
    },
    async (request) => {
      const { did, since, limit, cursor } = request.query
      assertOwnDid(ctx, did)
      if (since !== undefined && !isValidTid(since)) throw invalidRequest(`invalid rev: ${since}`)
      const cids = await ctx.repo.reader.listBlobs({ since, limit, cursor })
      return { cursor: cids.at(-1), cids }
    },
  )
}
