// The hold's HTTP surface: identity documents, the embedded PDS's XRPC routes and the
// io.atcr.hold methods, all under one XRPC error envelope; and the admin pages (HTML).

import { closeEarlyAnswersGently } from '@atcr/core/lifecycle'
import {
  answers,
  databaseAnswers,
  instrument,
  propagateRequestIds,
  registerHealthRoutes,
  requestIdOf,
  trustedProxies,
} from '@atcr/core/metrics'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { registerAdmin } from './admin/index.ts'
import { createOciBlobHandler, registerSignedReads } from './blobs/download.ts'
import type { HoldContext } from './context.ts'
import { registerGcRoute } from './gc/route.ts'
import { registerHoldMetrics } from './metrics.ts'
import { startEventPruner } from './pds/firehose/retention.ts'
import { registerRepoRoutes } from './pds/index.ts'
import { registerUploadRoutes } from './uploads/index.ts'
import { xrpcErrorHandler, xrpcNotFoundHandler } from './xrpc/error.ts'
import { registerHoldMethods } from './xrpc/hold-methods.ts'

export async function buildServer(ctx: HoldContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.logger.child({ subsystem: 'http' }) as FastifyBaseLogger,
    trustProxy: trustedProxies(ctx.config.server.trust_proxy),
    // The AppView's X-Request-Id, so one id follows a push or pull through both logs.
    genReqId: requestIdOf,
  })
  propagateRequestIds(app)
  closeEarlyAnswersGently(app)
  instrument(app, ctx.metrics)
  registerHoldMetrics(ctx)
  registerHealthRoutes(app, {
    database: () => databaseAnswers(ctx.db.db),
    // A stat of an object that need not exist: the store answers, whatever the answer.
    storage: () => ctx.storage.stat('readyz/probe'),
    plc_directory: () =>
      answers(fetch, new URL('/_health', ctx.config.identity.plc_directory_url).href),
  })
  app.setErrorHandler(xrpcErrorHandler)
  app.setNotFoundHandler(xrpcNotFoundHandler)

  const { identity } = ctx
  if (identity.did.startsWith('did:web:')) {
    app.get('/.well-known/did.json', async () => identity.document)
  }
  app.get('/.well-known/atproto-did', async (_request, reply) =>
    reply.type('text/plain; charset=utf-8').send(identity.did),
  )

  await registerRepoRoutes(app, {
    repo: ctx.repo,
    handle: identity.handle,
    getDidDocument: () => identity.document,
    ociBlob: createOciBlobHandler(ctx),
  })
  registerSignedReads(app, ctx)
  await registerUploadRoutes(app, ctx)
  await registerHoldMethods(app, ctx)
  await registerGcRoute(app, ctx)
  await registerAdmin(app, ctx)
  startEventPruner(app, {
    sequencer: ctx.repo.sequencer,
    retention: ctx.config.firehose.retention,
    logger: ctx.logger.child({ subsystem: 'firehose' }),
  })
  return app
}
