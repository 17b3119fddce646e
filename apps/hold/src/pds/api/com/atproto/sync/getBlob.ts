import { parseCidSafe } from '@atproto/lex-data'
import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import { digestOfCid } from '../../../../storage/blob-cid.ts'
import { assertOwnDid, type RepoApiContext } from '../../../context.ts'

interface Query {
  did: string
  cid: string
}

/**
 * com.atproto.sync.getBlob (GET and HEAD). A CID is an ordinary atproto blob from the
 * blob table, or else, when it is a raw sha256/sha512 CID, the OCI blob of that digest;
 * an OCI digest itself (`sha256:...`) goes to the `ociBlob` hook of the storage layer too.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.sync.getBlob',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['did', 'cid'],
          properties: { did: { type: 'string' }, cid: { type: 'string', minLength: 1 } },
        },
      },
    },
    async (request, reply) => {
      const { did, cid } = request.query
      assertOwnDid(ctx, did)
      const parsed = parseCidSafe(cid)
      if (!parsed) {
        if (ctx.ociBlob && cid.includes(':')) {
          return ctx.ociBlob({ did, digest: cid, request, reply })
        }
        throw invalidRequest(`invalid cid: ${cid}`)
      }
      const blob = await ctx.repo.blobs.get(parsed.toString())
      if (!blob) {
        const digest = digestOfCid(parsed)
        if (ctx.ociBlob && digest) return ctx.ociBlob({ did, digest, request, reply })
        throw invalidRequest(`Blob not found: ${cid}`, 'BlobNotFound')
      }
      return reply
        .type(blob.mimeType)
        .header('content-length', blob.size)
        .header('x-content-type-options', 'nosniff')
        .header('content-disposition', `attachment; filename="${blob.cid}"`)
        .header('content-security-policy', "default-src 'none'; sandbox")
        .send(Buffer.from(blob.content.buffer, blob.content.byteOffset, blob.content.byteLength))
    },
  )
}
