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
  const caller = await registry.authorize(request, name, 'pull')
  const target = await registry.resolve(image)
  const method = request.method === 'HEAD' ? 'HEAD' : 'GET'
  const range = header(request, 'range')
  let refused: number | null = null
  let unreachable: unknown = null
  for (const holdDid of await registry.pullHolds(target)) {
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
  throw new OciError('BLOB_UNKNOWN', {
    message: `blob ${digest} is unknown in ${name}`,
    detail: { digest },
  })
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
 * Blobs belong to their hold, shared by every image that references them, and the hold's
 * garbage collection reclaims those no manifest uses: the registry does not delete them.
 */
export async function deleteBlob(
  registry: Registry,
  request: FastifyRequest,
  _reply: FastifyReply,
  name: string,
  rawDigest: string,
): Promise<FastifyReply> {
  registry.parseName(name)
  parseDigest(rawDigest)
  await registry.authorize(request, name, 'delete')
  throw new OciError('UNSUPPORTED', {
    message:
      "blobs are not deleted through the registry: delete the manifests that use them, and the hold's garbage collection reclaims the space",
  })
}
