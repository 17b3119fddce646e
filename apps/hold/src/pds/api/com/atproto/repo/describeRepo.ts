import { INVALID_HANDLE, isValidHandle } from '@atproto/syntax'
import type { FastifyInstance } from 'fastify'
import { assertOwnRepo, type RepoApiContext } from '../../../context.ts'

interface Query {
  repo: string
}

/**
 * com.atproto.repo.describeRepo. A hold without a valid handle (on `localhost`, an IP
 * address or a port) is reported as `handle.invalid`, as a PDS does.
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
      const handle = ctx.handle?.toLowerCase() ?? INVALID_HANDLE
      const valid = handle !== INVALID_HANDLE && isValidHandle(handle)
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
