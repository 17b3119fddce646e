import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { invalidRequest } from '../../xrpc/error.ts'
import { RepoNotFoundError } from '../errors.ts'
import type { OutboxOptions } from '../firehose/outbox.ts'
import type { HoldRepo } from '../hold-repo.ts'

/** A DID document as JSON (served as is by describeRepo). */
export type DidDocumentJson = Record<string, unknown>

/**
 * Serves `com.atproto.sync.getBlob` for a `cid` that is not a CID but an OCI digest
 * (`sha256:...`): the storage layer answers (a presigned redirect, a HEAD with the size).
 * Authorization (`captain.public`) is the handler's to check.
 */
export type OciBlobHandler = (args: {
  did: string
  digest: string
  request: FastifyRequest
  reply: FastifyReply
}) => Promise<unknown>

export interface RepoRoutesOptions {
  repo: HoldRepo
  /** The hold's handle, answered by resolveHandle and describeRepo; null for none. */
  handle: string | null
  getDidDocument: () => DidDocumentJson | Promise<DidDocumentJson>
  /** Reported by `/xrpc/_health`; defaults to the hold package's version. */
  version?: string
  describeServer?: {
    links?: { privacyPolicy?: string; termsOfService?: string }
    contact?: { email?: string }
  }
  /** The OCI-digest variant of sync.getBlob; without it such requests are refused. */
  ociBlob?: OciBlobHandler
  firehose?: OutboxOptions
}

export interface RepoApiContext extends RepoRoutesOptions {
  did: string
  version: string
}

/** `repo` (a DID or handle) must name the hold's own repo. */
export function assertOwnRepo(ctx: RepoApiContext, repo: string): void {
  if (repo !== ctx.did && (ctx.handle === null || repo.toLowerCase() !== ctx.handle)) {
    throw new RepoNotFoundError(repo)
  }
}

/** `did` must be the hold's DID. */
export function assertOwnDid(ctx: RepoApiContext, did: string): void {
  if (did !== ctx.did) throw new RepoNotFoundError(did)
}

export function assertNsid(collection: string): void {
  if (!isValidNsid(collection)) throw invalidRequest(`invalid collection: ${collection}`)
}

export function assertRecordKey(rkey: string): void {
  if (!isValidRecordKey(rkey)) throw invalidRequest(`invalid record key: ${rkey}`)
}

/** The media type of sync.getRepo and sync.getRecord answers. */
export const CAR_MEDIA_TYPE = 'application/vnd.ipld.car'
