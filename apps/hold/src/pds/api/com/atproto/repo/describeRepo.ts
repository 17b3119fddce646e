import { INVALID_HANDLE, isValidHandle } from '@atproto/syntax'
import type { FastifyInstance } from 'fastify'
import { assertOwnRepo, type RepoApiContext } from '../../../context.ts'

interface Query {
  repo: string
}

/**
 * com.atproto.repo.describeRepo. A handle that is not a valid atproto handle (a host
 * with a port, in development) is reported as `handle.invalid`.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.repo.describeRepo',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['repo'],
          properties: { repo: { type: 'string', minLength: 1 } },
        },
      },
    },
    async (request) => {
      assertOwnRepo(ctx, request.query.repo)
      const [didDoc, collections] = await Promise.all([
        ctx.getDidDocument(),
        ctx.repo.reader.listCollections(),
      ])
      const handle = ctx.handle.toLowerCase()
      const valid = isValidHandle(handle)
      const aka = Array.isArray(didDoc.alsoKnownAs) ? didDoc.alsoKnownAs : []
      return {
        handle: valid ? handle : INVALID_HANDLE,
        did: ctx.did,
        didDoc,
        collections,
        handleIsCorrect:
          valid && aka.some((a) => typeof a === 'string' && a.toLowerCase() === `at://${handle}`),
      }
    },
  )
}
