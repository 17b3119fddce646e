// GET/HEAD/DELETE /v2/<name>/blobs/<digest>: blobs live on holds. The hold of the
// repository is asked with com.atproto.sync.getBlob (redirects not followed), and its
// answer passed on: a 307 to a presigned URL, or the bytes streamed through with ranges.
// A redirect clients must not follow (see redirectRefusal) is read by the AppView instead.
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
    if (response.status === 404 || response.status === 400) {
      await response.body?.cancel()
      continue
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel()
      refused = response.status
      continue
    }
    reply.header('docker-content-digest', digest)
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel()
      const location = redirectTarget(hold, response)
      const refusal = await redirectRefusal(registry, location)
      if (refusal === null) return reply.code(307).header('location', location.href).send()
      response = await readRedirect(registry, hold, location, refusal, { method, range })
    }
    const status = response.status
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

/** Where a hold's redirect points, resolved against the hold's endpoint. */
function redirectTarget(hold: Hold, response: Response): URL {
  const location = response.headers.get('location')
  try {
    if (location) return new URL(location, hold.endpoint)
  } catch {}
  throw new OciError('UNAVAILABLE', { message: `hold ${hold.did} redirected nowhere usable` })
}

/**
 * Why clients must not be sent where a hold redirected (issue 16): the AppView's own
 * origin, or in production mode anything but a public https address (a user's hold could
 * otherwise point pullers at loopback or cloud metadata). Null when the 307 may pass on.
 */
async function redirectRefusal(registry: Registry, location: URL): Promise<Refusal | null> {
  if (location.origin === new URL(registry.ctx.config.server.base_url).origin) {
    return { why: 'the AppView itself', mayRead: false }
  }
  const reason = await registry.ctx.clientRedirects(location)
  return reason === null ? null : { why: `not a public address (${reason})`, mayRead: true }
}

/** Why a redirect is not passed on, and whether the AppView may read it itself instead. */
interface Refusal {
  why: string
  mayRead: boolean
}

/**
 * The bytes behind a redirect the client may not follow, read by the AppView itself
 * through its guarded fetch, or a clear error when the AppView may not reach it either.
 * Only the origin is named: the URL may carry a signature.
 */
async function readRedirect(
  registry: Registry,
  hold: Hold,
  location: URL,
  refusal: Refusal,
  options: { method: 'GET' | 'HEAD'; range: string | undefined },
): Promise<Response> {
  const refused = (cause?: unknown) =>
    new OciError('UNAVAILABLE', {
      message: `hold ${hold.did} redirected to ${location.origin}, ${refusal.why}, which the registry neither sends clients to nor reads from`,
      cause,
    })
  if (!refusal.mayRead) throw refused()
  let response: Response
  try {
    response = await registry.holds.readRedirect(hold, location, options)
  } catch (error) {
    throw refused(error)
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel()
    throw refused()
  }
  return response
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
