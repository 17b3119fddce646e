// GET/HEAD/DELETE /v2/<name>/blobs/<digest>: blobs live on holds. The hold of the
// repository is asked with com.atproto.sync.getBlob (redirects not followed), and its
// answer passed on: a 307 to a presigned URL, or the bytes streamed through with ranges.
import { Readable } from 'node:stream'
import { OciError, parseDigest } from '@atcr/core/oci'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { NoSessionError } from '../auth/types.ts'
import type { Hold, HoldCaller } from '../holds/hold-client.ts'
import { header } from './http.ts'
import type { Registry } from './registry.ts'

const PASSED_HEADERS = ['content-length', 'content-range', 'accept-ranges', 'etag', 'last-modified']

export async function getBlob(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawDigest: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const { digest } = parseDigest(rawDigest)
  const range = header(request, 'range')
  assertSatisfiable(range)
  const caller = await registry.authorize(request, name, 'pull')
  const target = await registry.resolve(image)
  const held = await registry.content.blob(target, digest)
  if (!held) throw blobUnknown(name, digest)
  const method = request.method === 'HEAD' ? 'HEAD' : 'GET'
  let refused: number | null = null
  let unreachable: unknown = null
  for await (const holdDid of registry.blobHolds(target, held.holdDid)) {
    let hold: Hold
    let response: Response
    try {
      hold = await registry.holds.resolve(holdDid)
      response = await askHold(registry, hold, digest, { method, caller: caller.did, range })
    } catch (error) {
      // One hold down must not hide a blob another hold of the repository has.
      unreachable ??= error
      continue
    }
    const status = response.status
    if (status === 404 || status === 400) {
      await response.body?.cancel()
      continue
    }
    if (status === 401 || status === 403) {
      await response.body?.cancel()
      refused = status
      continue
    }
    reply.header('docker-content-digest', digest)
    if (status >= 300 && status < 400) {
      await response.body?.cancel()
      const location = response.headers.get('location')
      if (!location)
        throw new OciError('UNAVAILABLE', { message: `hold ${hold.did} redirected nowhere` })
      return reply.code(307).header('location', new URL(location, hold.endpoint).href).send()
    }
    if (status === 416) {
      await response.body?.cancel()
      const contentRange = response.headers.get('content-range')
      throw new OciError('RANGE_INVALID', {
        message: `the range ${range ?? ''} lies outside the blob`,
        status: 416,
        headers: contentRange ? { 'content-range': contentRange } : {},
      })
    }
    if (status !== 200 && status !== 206) {
      await response.body?.cancel()
      throw new OciError('UNAVAILABLE', {
        message: `hold ${hold.did} answered ${status} for ${digest}`,
      })
    }
    reply.code(status).type('application/octet-stream')
    for (const name of PASSED_HEADERS) {
      const value = response.headers.get(name)
      if (value !== null) reply.header(name, value)
    }
    if (method === 'HEAD' || !response.body) {
      await response.body?.cancel()
      // An empty stream rather than no body, so that the hold's Content-Length stands.
      return reply.send(Readable.from([]))
    }
    // Fastify reads the web stream itself, one chunk at a time, waiting for the client to
    // drain before the next read (the hold is read no faster than the client takes it),
    // and cancels it when the client goes away.
    return reply.send(response.body)
  }

  if (unreachable !== null) throw unreachable
  if (refused !== null) {
    if (!caller.did) throw registry.challenge(caller)
    throw new OciError('DENIED', {
      message: `the hold of ${name} does not let you read ${digest}`,
    })
  }
  throw blobUnknown(name, digest)
}

async function askHold(
  registry: Registry,
  hold: Hold,
  digest: string,
  options: { method: 'GET' | 'HEAD'; caller: HoldCaller; range: string | undefined },
): Promise<Response> {
  try {
    return await registry.holds.getBlob(hold, digest, options)
  } catch (error) {
    // No PDS session to mint a service token with: public holds still answer anonymously.
    if (!(error instanceof NoSessionError)) throw error
    return registry.holds.getBlob(hold, digest, { ...options, caller: null })
  }
}

/**
 * Unlinks a blob from the repository (202): it is no longer served there. The bytes stay on
 * the hold, shared with every repository that holds them, until the hold's garbage
 * collection finds no manifest using them.
 */
export async function deleteBlob(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawDigest: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const { digest } = parseDigest(rawDigest)
  const caller = await registry.authorize(request, name, 'delete')
  const target = await registry.resolve(image)
  registry.assertOwner(caller, target)
  if (!(await registry.content.blob(target, digest))) throw blobUnknown(name, digest)
  await registry.links.unlinkBlob(target.owner.did, target.repository, digest)
  return reply.code(202).header('content-length', 0).send()
}

function blobUnknown(name: string, digest: string): OciError {
  return new OciError('BLOB_UNKNOWN', {
    message: `blob ${digest} is unknown in ${name}`,
    detail: { digest },
  })
}

/** A byte range that ends before it starts can never be served: 416, as for any other. */
function assertSatisfiable(range: string | undefined): void {
  const match = range === undefined ? null : /^bytes=(\d+)-(\d+)$/.exec(range.trim())
  if (match && Number(match[2]) < Number(match[1])) {
    throw new OciError('RANGE_INVALID', {
      message: `the range ${range} ends before it starts`,
      status: 416,
    })
  }
}
