import { lexToJson } from '@atproto/lex-json'
import type { FastifyInstance } from 'fastify'
import { assertNsid, assertOwnRepo, type RepoApiContext } from '../../../context.ts'

interface Query {
  repo: string
  collection: string
  limit: number
  cursor?: string
  reverse: boolean
}

/**
 * com.atproto.repo.listRecords, ordered as a PDS orders them: by rkey, descending
 * (newest TIDs first) unless `reverse`; the cursor is the last rkey of the page.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.repo.listRecords',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['repo', 'collection'],
          properties: {
            repo: { type: 'string', minLength: 1 },
            collection: { type: 'string' },
            limit: { type: 'integer', minimum: 1, maximum: 100, default: 50 },
            cursor: { type: 'string', maxLength: 512 },
            reverse: { type: 'boolean', default: false },
          },
        },
      },
    },
    async (request) => {
      const { repo, collection, limit, cursor, reverse } = request.query
      assertOwnRepo(ctx, repo)
      assertNsid(collection)
      const records = await ctx.repo.reader.listRecords({ collection, limit, cursor, reverse })
      const last = records.at(-1)
      return {
        records: records.map((r) => ({ uri: r.uri, cid: r.cid, value: lexToJson(r.value) })),
        ...(last && records.length === limit ? { cursor: last.rkey } : {}),
      }
    },
  )
}
