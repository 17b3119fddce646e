// /v2/<name>/blobs/uploads/[<id>]: POST (open, monolithic, or mount), PATCH (streamed or
// chunked with Content-Range), PUT (finish with ?digest=, optionally with a last chunk),
// GET (status) and DELETE (cancel).
import { OciError, parseDigest } from '@atcr/core/oci'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Caller } from '../auth/types.ts'
import {
  contentLength,
  hasBody,
  header,
  parseContentRange,
  queryValue,
  uploadRange,
} from './http.ts'
import type { Registry, Target } from './registry.ts'
import { registryPath } from './routes.ts'
import type { UploadSession } from './upload-sessions.ts'

function body(request: FastifyRequest): AsyncIterable<Buffer> {
  return request.raw as AsyncIterable<Buffer>
}

function lengthOf(request: FastifyRequest): { length?: number } {
  const length = contentLength(request)
  return length === undefined ? {} : { length }
}

function sessionPath(name: string, session: UploadSession): string {
  return registryPath(name, 'blobs', 'uploads', session.id)
}

function accepted(reply: FastifyReply, name: string, session: UploadSession, code: 202 | 204) {
  return reply
    .code(code)
    .header('location', sessionPath(name, session))
    .header('range', uploadRange(session.offset))
    .header('docker-upload-uuid', session.id)
    .header('content-length', 0)
    .send()
}

function created(reply: FastifyReply, name: string, digest: string) {
  return reply
    .code(201)
    .header('location', registryPath(name, 'blobs', digest))
    .header('docker-content-digest', digest)
    .header('content-length', 0)
    .send()
}

async function authorizePush(
  registry: Registry,
  request: FastifyRequest,
  name: string,
): Promise<{ caller: Caller; target: Target; callerDid: string }> {
  const image = registry.parseName(name)
  const caller = await registry.authorize(request, name, 'push')
  const target = await registry.resolve(image)
  const callerDid = registry.assertOwner(caller, target)
  return { caller, target, callerDid }
}

export async function startUpload(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
): Promise<FastifyReply> {
  const mount = queryValue(request, 'mount')
  const digestParam = queryValue(request, 'digest')
  const mountDigest = mount === undefined ? undefined : parseDigest(mount).digest
  const expected = digestParam === undefined ? undefined : parseDigest(digestParam)
  const { target, callerDid } = await authorizePush(registry, request, name)
  const hold = await registry.selection.pushHold(target.owner)
  await registry.selection.ensureCrew(callerDid, hold)

  if (
    mountDigest !== undefined &&
    (await registry.mountBlob(target, queryValue(request, 'from'), mountDigest, hold, callerDid))
  ) {
    return created(reply, name, mountDigest)
  }

  const session = await registry.uploads.open({
    name,
    callerDid,
    hold,
    ...(expected ? { expectedDigest: expected.digest } : {}),
  })
  if (expected) {
    // Monolithic: the whole blob in this one request.
    await registry.uploads.append(session, body(request), {
      ...lengthOf(request),
      digest: expected.digest,
    })
    await registry.uploads.complete(session, expected.digest, expected.algorithm)
    await registry.linkBlob(target, expected.digest, hold.did)
    return created(reply, name, expected.digest)
  }
  if (hasBody(request)) {
    await registry.uploads.append(session, body(request), lengthOf(request))
  }
  return accepted(reply, name, session, 202)
}

async function findSession(
  registry: Registry,
  request: FastifyRequest,
  name: string,
  uploadId: string,
): Promise<UploadSession> {
  const { callerDid } = await authorizePush(registry, request, name)
  return await registry.uploads.get(uploadId, name, callerDid)
}

/** Appends a request's body (a chunk with its Content-Range, or a stream) to the session. */
async function appendChunk(
  registry: Registry,
  request: FastifyRequest,
  name: string,
  session: UploadSession,
  digest?: string,
): Promise<void> {
  try {
    const range = parseContentRange(header(request, 'content-range'))
    await registry.uploads.append(session, body(request), {
      ...(range ? { range } : {}),
      ...lengthOf(request),
      ...(digest === undefined ? {} : { digest }),
    })
  } catch (error) {
    throw await withUploadState(registry, name, session, error)
  }
}

export async function patchUpload(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  uploadId: string,
): Promise<FastifyReply> {
  const session = await findSession(registry, request, name, uploadId)
  await appendChunk(registry, request, name, session)
  return accepted(reply, name, session, 202)
}

/**
 * A misplaced chunk leaves its session as it was: the 416 tells the client where the
 * upload stands, so it can resume from there.
 */
async function withUploadState(
  registry: Registry,
  name: string,
  session: UploadSession,
  error: unknown,
): Promise<unknown> {
  if (!(error instanceof OciError) || error.code !== 'RANGE_INVALID') return error
  const current = await registry.uploads.find(session.id)
  if (!current) return error
  return new OciError('RANGE_INVALID', {
    message: error.message,
    status: 416,
    headers: {
      location: sessionPath(name, current),
      range: uploadRange(current.offset),
      'docker-upload-uuid': current.id,
    },
  })
}

export async function finishUpload(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  uploadId: string,
): Promise<FastifyReply> {
  const digestParam = queryValue(request, 'digest')
  const { target, callerDid } = await authorizePush(registry, request, name)
  const session = await registry.uploads.get(uploadId, name, callerDid)
  if (digestParam === undefined) {
    throw new OciError('DIGEST_INVALID', {
      message: 'finishing an upload needs ?digest=<digest> of the whole blob',
    })
  }
  let expected: ReturnType<typeof parseDigest>
  try {
    expected = parseDigest(digestParam)
  } catch (error) {
    await registry.uploads.abort(session)
    throw error
  }
  if (hasBody(request)) await appendChunk(registry, request, name, session, expected.digest)
  await registry.uploads.complete(session, expected.digest, expected.algorithm)
  await registry.linkBlob(target, expected.digest, session.hold.did)
  return created(reply, name, expected.digest)
}

export async function uploadStatus(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  uploadId: string,
): Promise<FastifyReply> {
  const session = await findSession(registry, request, name, uploadId)
  return accepted(reply, name, session, 204)
}

export async function cancelUpload(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  uploadId: string,
): Promise<FastifyReply> {
  const session = await findSession(registry, request, name, uploadId)
  await registry.uploads.abort(session)
  return reply.code(204).header('content-length', 0).send()
}
