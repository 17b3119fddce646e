import { readFileSync } from 'node:fs'
import fastifyWebsocket from '@fastify/websocket'
import type { FastifyInstance } from 'fastify'
import { xrpcErrorHandler } from '../../xrpc/error.ts'
import { register as resolveHandle } from './com/atproto/identity/resolveHandle.ts'
import { register as describeRepo } from './com/atproto/repo/describeRepo.ts'
import { register as getRecord } from './com/atproto/repo/getRecord.ts'
import { register as listRecords } from './com/atproto/repo/listRecords.ts'
import { register as describeServer } from './com/atproto/server/describeServer.ts'
import { register as getBlob } from './com/atproto/sync/getBlob.ts'
import { register as getBlocks } from './com/atproto/sync/getBlocks.ts'
import { register as getLatestCommit } from './com/atproto/sync/getLatestCommit.ts'
import { register as syncGetRecord } from './com/atproto/sync/getRecord.ts'
import { register as getRepo } from './com/atproto/sync/getRepo.ts'
import { register as getRepoStatus } from './com/atproto/sync/getRepoStatus.ts'
import { register as listBlobs } from './com/atproto/sync/listBlobs.ts'
import { register as listRepos } from './com/atproto/sync/listRepos.ts'
import { register as subscribeRepos } from './com/atproto/sync/subscribeRepos.ts'
import type { RepoApiContext, RepoRoutesOptions } from './context.ts'
import { register as health } from './health.ts'

export type { DidDocumentJson, OciBlobHandler, RepoRoutesOptions } from './context.ts'

const routes = [
  health,
  describeServer,
  describeRepo,
  getRecord,
  listRecords,
  getRepo,
  syncGetRecord,
  getLatestCommit,
  getRepoStatus,
  listRepos,
  getBlob,
  listBlobs,
  getBlocks,
  subscribeRepos,
  resolveHandle,
]

/**
 * Registers the embedded PDS's public XRPC routes (repo reads, sync, the firehose,
 * identity, health) in their own fastify scope, with the XRPC error handler.
 * Registers @fastify/websocket on `app` unless it already is.
 */
export async function registerRepoRoutes(
  app: FastifyInstance,
  opts: RepoRoutesOptions,
): Promise<void> {
  if (!app.hasDecorator('websocketServer')) await app.register(fastifyWebsocket)
  const ctx: RepoApiContext = {
    ...opts,
    did: opts.repo.did,
    version: opts.version ?? packageVersion(),
  }
  await app.register(async (scope) => {
    scope.setErrorHandler(xrpcErrorHandler)
    for (const route of routes) route(scope, ctx)
  })
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'))
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0'
}
