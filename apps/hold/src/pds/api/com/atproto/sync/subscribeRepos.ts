import type { FastifyInstance } from 'fastify'
import { invalidRequest } from '../../../../../xrpc/error.ts'
import { errorFrame } from '../../../../firehose/frames.ts'
import { serveSubscription } from '../../../../firehose/outbox.ts'
import type { RepoApiContext } from '../../../context.ts'

/**
 * com.atproto.sync.subscribeRepos over WebSocket. Parameter errors are error frames
 * (the upgrade has already happened), like every other failure on this stream; a plain
 * HTTP GET gets an XRPC error.
 */
export function register(app: FastifyInstance, ctx: RepoApiContext): void {
  app.route({
    method: 'GET',
    url: '/xrpc/com.atproto.sync.subscribeRepos',
    handler: async () => {
      throw invalidRequest('subscribeRepos is a WebSocket subscription: send an upgrade request')
    },
    wsHandler: (socket, request) => {
      const raw = (request.query as Record<string, unknown>).cursor
      let cursor: number | undefined
      if (raw !== undefined) {
        cursor = typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : Number.NaN
        if (Number.isNaN(cursor)) {
          socket.send(errorFrame('InvalidRequest', 'cursor must be a non-negative integer'))
          socket.close(1008, 'InvalidRequest')
          return
        }
      }
      void serveSubscription(socket, ctx.repo.sequencer, cursor, ctx.firehose ?? {}, request.log)
    },
  })
}
