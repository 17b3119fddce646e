// The OCI Distribution API v1.1 under /v2. Names contain slashes, so one route takes
// every /v2 path and routes.ts takes it apart. Bodies are never parsed by fastify: blob
// uploads stream from the request, manifests are read with a size bound. Every answer
// carries Docker-Distribution-API-Version, and every error is the OCI JSON envelope.
import { OciError } from '@atcr/core/oci'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AppViewContext } from '../context.ts'
import { deleteBlob, getBlob } from './blobs.ts'
import { listCatalog, listReferrers, listTags } from './listings.ts'
import { deleteManifest, getManifest, putManifest } from './manifests.ts'
import type { Registry } from './registry.ts'
import { matchRoute, type RegistryRoute } from './routes.ts'
import { cancelUpload, finishUpload, patchUpload, startUpload, uploadStatus } from './uploads.ts'

export { Registry } from './registry.ts'

const API_VERSION_HEADER = 'docker-distribution-api-version'
const API_VERSION = 'registry/2.0'
const METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'] as const

type Handler = (
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
) => Promise<FastifyReply>

function unsupported(request: FastifyRequest, route: RegistryRoute): OciError {
  return new OciError('UNSUPPORTED', {
    message: `${request.method} is not supported on ${route.kind} endpoints`,
  })
}

/** The handler for a method on a route, or the reason there is none. */
function dispatch(route: RegistryRoute, request: FastifyRequest): Handler {
  const method = request.method
  const read = method === 'GET' || method === 'HEAD'
  switch (route.kind) {
    case 'base':
      if (read) return base
      break
    case 'catalog':
      if (method === 'GET') return (r, q, p) => listCatalog(r, q, p)
      break
    case 'tags':
      if (method === 'GET') return (r, q, p) => listTags(r, q, p, route.name)
      break
    case 'referrers':
      if (method === 'GET') return (r, q, p) => listReferrers(r, q, p, route.name, route.digest)
      break
    case 'manifest':
      if (read) return (r, q, p) => getManifest(r, q, p, route.name, route.reference)
      if (method === 'PUT') return (r, q, p) => putManifest(r, q, p, route.name, route.reference)
      if (method === 'DELETE') {
        return (r, q, p) => deleteManifest(r, q, p, route.name, route.reference)
      }
      break
    case 'blob':
      if (read) return (r, q, p) => getBlob(r, q, p, route.name, route.digest)
      if (method === 'DELETE') return (r, q, p) => deleteBlob(r, q, p, route.name, route.digest)
      break
    case 'upload': {
      const id = route.uploadId
      if (id === null) {
        if (method === 'POST') return (r, q, p) => startUpload(r, q, p, route.name)
        break
      }
      if (method === 'PATCH') return (r, q, p) => patchUpload(r, q, p, route.name, id)
      if (method === 'PUT') return (r, q, p) => finishUpload(r, q, p, route.name, id)
      if (read) return (r, q, p) => uploadStatus(r, q, p, route.name, id)
      if (method === 'DELETE') return (r, q, p) => cancelUpload(r, q, p, route.name, id)
      break
    }
  }
  throw unsupported(request, route)
}

/** `/v2/`: 200 with a valid registry token, else the challenge that leads to one. */
async function base(registry: Registry, request: FastifyRequest, reply: FastifyReply) {
  const caller = await registry.ctx.auth.authenticate(request)
  if (caller.did === null && caller.access.length === 0) throw registry.ctx.auth.challenge()
  return reply.type('application/json').send({})
}

/** The /v2 routes, in a scope of their own (errors: the OCI envelope, set by the caller). */
export function registerRegistryRoutes(scope: FastifyInstance, ctx: AppViewContext): void {
  const registry = ctx.registry
  scope.removeAllContentTypeParsers()
  // Bodies stay unread streams; each handler reads what it needs, bounded.
  scope.addContentTypeParser('*', (_request, _payload, done) => done(null))
  scope.addHook('onSend', async (request, reply) => {
    reply.header(API_VERSION_HEADER, API_VERSION)
    // An answer given before the body was read (refused, malformed) closes the connection
    // rather than making the server read and discard a large upload.
    if (!request.raw.complete && request.raw.readable) reply.header('connection', 'close')
  })
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const pathname = request.url.split('?', 1)[0]!
    const route = matchRoute(pathname)
    if (!route) {
      throw new OciError('NAME_UNKNOWN', {
        status: 404,
        message: `${pathname} is not an endpoint of the distribution API`,
      })
    }
    return dispatch(route, request)(registry, request, reply)
  }
  scope.route({ method: [...METHODS], url: '/v2', handler, exposeHeadRoute: false })
  scope.route({ method: [...METHODS], url: '/v2/*', handler, exposeHeadRoute: false })
}
