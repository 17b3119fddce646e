// com.atproto.sync.getBlob for OCI blobs (`cid` = an OCI digest): a redirect to a
// presigned storage URL (or the CDN) when the storage can serve clients itself, otherwise
// the bytes streamed by the hold, with Range support. HEAD answers the size.
import type { OutgoingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import { parseDigest } from '@atcr/core/oci'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { authenticate, requireRead } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import type { OciBlobHandler } from '../pds/index.ts'
import {
  blobPath,
  InvalidRangeError,
  PathNotFoundError,
  SIGNED_STORAGE_PREFIX,
  sendLocalRange,
} from '../storage/index.ts'
import { invalidRequest, XrpcError } from '../xrpc/error.ts'

export const GET_BLOB_NSID = 'com.atproto.sync.getBlob'

/** A `Range` header read against an object's size. */
export type RangeRequest =
  | { kind: 'whole' }
  | { kind: 'partial'; first: number; last: number }
  | { kind: 'unsatisfiable' }

export function createOciBlobHandler(ctx: HoldContext): OciBlobHandler {
  return async ({ digest, request, reply }) => {
    const caller = await authenticate(ctx, request, GET_BLOB_NSID)
    await requireRead(ctx, caller)
    let path: string
    try {
      const parsed = parseDigest(digest)
      path = blobPath(parsed.algorithm, parsed.hex)
    } catch (err) {
      throw invalidRequest(err instanceof Error ? err.message : `invalid digest: ${digest}`)
    }
    const stat = await ctx.storage.stat(path)
    if (!stat) throw blobNotFound(digest)

    const etag = `"${digest}"`
    reply
      .header('accept-ranges', 'bytes')
      .header('etag', etag)
      .header('x-content-type-options', 'nosniff')
    if (request.method === 'HEAD') {
      // An empty stream, not an empty body: fastify's HEAD handling would otherwise
      // replace the Content-Length with 0.
      return reply
        .code(200)
        .type('application/octet-stream')
        .header('content-length', stat.size)
        .send(Readable.from([]))
    }

    const redirect = await redirectUrl(ctx, path, stat.size)
    if (redirect) return reply.code(307).header('location', redirect).send()
    return streamBlob(ctx, request, reply, { path, digest, size: stat.size, etag })
  }
}

const SIGNED_BLOB_PATH = /^blobs\/([a-z0-9]+)\/[a-f0-9]{2}\/([a-f0-9]+)\/data$/

/**
 * The hold's own presigned reads (filesystem storage): `GET|HEAD /storage/<blob path>`
 * with the `expires` and `signature` getBlob's redirect gave. No service token: the
 * signature is the permission, for as long as it lasts.
 */
export function registerSignedReads(app: FastifyInstance, ctx: HoldContext): void {
  app.route({
    method: ['GET', 'HEAD'],
    url: `${SIGNED_STORAGE_PREFIX}*`,
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      const path = (request.params as { '*': string })['*']
      const query = request.query as Record<string, unknown>
      const match = SIGNED_BLOB_PATH.exec(path)
      const signed = ctx.storageUrls.verify(
        path,
        typeof query.expires === 'string' ? query.expires : undefined,
        typeof query.signature === 'string' ? query.signature : undefined,
      )
      if (!match || !signed) {
        throw new XrpcError(
          403,
          'InvalidSignature',
          'The URL is not signed by this hold, or expired',
        )
      }
      const digest = `${match[1]}:${match[2]}`
      const stat = await ctx.storage.stat(path)
      if (!stat) throw blobNotFound(digest)
      const etag = `"${digest}"`
      reply.header('accept-ranges', 'bytes').header('etag', etag)
      if (request.method === 'HEAD') {
        return reply
          .type('application/octet-stream')
          .header('content-length', stat.size)
          .send(Readable.from([]))
      }
      return streamBlob(ctx, request, reply, { path, digest, size: stat.size, etag })
    },
  })
}

/**
 * The CDN URL, or a presigned storage URL, when presigned redirects are on. A small blob
 * on the hold's own disk is answered with its bytes: a redirect to the hold's /storage/
 * would cost the client a second request to this same hold.
 */
async function redirectUrl(ctx: HoldContext, path: string, size: number): Promise<string | null> {
  const { storage } = ctx.config
  if (!storage.presigned_redirects) return null
  if (storage.cdn_base_url) return `${storage.cdn_base_url.replace(/\/+$/, '')}/${path}`
  if (ctx.storage.openLocal && size <= storage.inline_max_bytes) return null
  return ctx.storage.presignGet(path)
}

async function streamBlob(
  ctx: HoldContext,
  request: FastifyRequest,
  reply: FastifyReply,
  blob: { path: string; digest: string; size: number; etag: string },
): Promise<FastifyReply> {
  if (matchesEtag(request.headers['if-none-match'], blob.etag)) {
    return reply.code(304).send()
  }
  const range = parseRange(request.headers.range, blob.size)
  if (range.kind === 'unsatisfiable') {
    return rangeNotSatisfiable(reply, blob.size)
  }
  reply.type('application/octet-stream')
  try {
    if (ctx.storage.openLocal) {
      const local = await ctx.storage.openLocal(
        blob.path,
        range.kind === 'whole' ? undefined : { start: range.first, end: range.last + 1 },
      )
      if (range.kind === 'partial') {
        reply.code(206).header('content-range', `bytes ${range.first}-${range.last}/${blob.size}`)
      }
      // Written by hand, not by reply.send(stream): sendLocalRange reuses its buffers.
      reply.header('content-length', local.end - local.start).hijack()
      reply.raw.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders)
      await sendLocalRange(local, reply.raw)
      return reply
    }
    if (range.kind === 'whole') {
      const stream = await ctx.storage.read(blob.path)
      return reply.code(200).header('content-length', blob.size).send(stream)
    }
    const stream = await ctx.storage.read(blob.path, { start: range.first, end: range.last + 1 })
    return reply
      .code(206)
      .header('content-range', `bytes ${range.first}-${range.last}/${blob.size}`)
      .header('content-length', range.last - range.first + 1)
      .send(stream)
  } catch (err) {
    // Deleted (garbage collected) or replaced between the stat and the read.
    if (err instanceof PathNotFoundError) throw blobNotFound(blob.digest)
    if (err instanceof InvalidRangeError) return rangeNotSatisfiable(reply, err.size ?? blob.size)
    throw err
  }
}

function rangeNotSatisfiable(reply: FastifyReply, size: number): FastifyReply {
  return reply
    .code(416)
    .header('content-range', `bytes */${size}`)
    .type('application/json; charset=utf-8')
    .send({ error: 'InvalidRange', message: `Range not satisfiable for ${size} bytes` })
}

function blobNotFound(digest: string): XrpcError {
  return new XrpcError(404, 'BlobNotFound', `Blob not found: ${digest}`)
}

function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header
    .split(',')
    .map((tag) => tag.trim().replace(/^W\//, ''))
    .some((tag) => tag === '*' || tag === etag)
}

const SINGLE_RANGE = /^bytes=(\d*)-(\d*)$/i

/**
 * Reads a `Range` header (RFC 9110 §14.1.2). One byte range is served as 206; a range that
 * starts at or past the end (or an empty suffix) is unsatisfiable (416). What cannot be
 * honoured simply (several ranges, another unit, bad syntax) is ignored: the whole blob.
 * One that ends before it starts is unsatisfiable too.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return { kind: 'whole' }
  const match = SINGLE_RANGE.exec(header.trim())
  if (!match) return { kind: 'whole' }
  const [, startText = '', endText = ''] = match
  if (startText === '' && endText === '') return { kind: 'whole' }
  if (startText === '') {
    const suffix = Number(endText)
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' }
    return { kind: 'partial', first: Math.max(0, size - suffix), last: size - 1 }
  }
  const first = Number(startText)
  const last = endText === '' ? Number.MAX_SAFE_INTEGER : Number(endText)
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last)) return { kind: 'whole' }
  // A range that ends before it starts can never be served (the registry answers 416).
  if (last < first) return { kind: 'unsatisfiable' }
  if (first >= size) return { kind: 'unsatisfiable' }
  return { kind: 'partial', first, last: Math.min(last, size - 1) }
}
