import { lexToJson } from '@atproto/lex-json'
import type { FastifyInstance } from 'fastify'
import { RecordNotFoundError } from '../../../../errors.ts'
import {
  assertNsid,
  assertOwnRepo,
  assertRecordKey,
  type RepoApiContext,
} from '../../../context.ts'

interface Query {
  repo: string
  collection: string
  rkey: string
  cid?: string
}

/** com.atproto.repo.getRecord: `{uri, cid, value}`; a `cid` that is not current is not found. */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.get<{ Querystring: Query }>(
    '/xrpc/com.atproto.repo.getRecord',
    {
      schema: {
        querystring: {
          type: 'object',
          required: ['repo', 'collection', 'rkey'],
          properties: {
            repo: { type: 'string', minLength: 1 },
            collection: { type: 'string' },
            rkey: { type: 'string' },
            cid: { type: 'string' },
          },
        },
      },
    },
    async (request) => {
      const { repo, collection, rkey, cid } = request.query
      assertOwnRepo(ctx, repo)
      assertNsid(collection)
      assertRecordKey(rkey)
      const record = await ctx.repo.reader.getRecord(collection, rkey)
      if (!record || (cid !== undefined && cid !== record.cid)) {
        throw new RecordNotFoundError(`at://${ctx.did}/${collection}/${rkey}`)
      }
      return { uri: record.uri, cid: record.cid, value: lexToJson(record.value) }
    },
  )
}
