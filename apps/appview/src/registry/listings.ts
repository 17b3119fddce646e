// The listings: /v2/<name>/tags/list, /v2/<name>/referrers/<digest> and /v2/_catalog.
import {
  buildNextLink,
  CATALOG_SCOPE,
  OCI_IMAGE_INDEX,
  OciError,
  type PageRequest,
  parseDigest,
  parsePageRequest,
  scopeAllows,
} from '@atcr/core/oci'
import type { FastifyReply, FastifyRequest } from 'fastify'
import {
  artifactTypeOf,
  type ManifestDocument,
  parseManifest,
} from '../records/manifest-document.ts'
import { queryValue } from './http.ts'
import type { Registry } from './registry.ts'

/** One page of a sorted list, with the Link header when more follow. */
function page(reply: FastifyReply, path: string, sorted: string[], request: PageRequest): string[] {
  const after = request.last === undefined ? sorted : sorted.filter((s) => s > request.last!)
  if (request.n === undefined || after.length <= request.n) return after
  const items = after.slice(0, request.n)
  reply.header('link', buildNextLink(path, { n: request.n, last: items[items.length - 1]! }))
  return items
}

export async function listTags(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const pageRequest = parsePageRequest(request.query as Record<string, unknown>)
  await registry.authorize(request, name, 'pull')
  const target = await registry.resolve(image)
  // A page needs the tags past `last`, and one more to know whether another page follows.
  const tags = await registry.tags.names(target.owner, target.repository, {
    ...(pageRequest.last === undefined ? {} : { after: pageRequest.last }),
    ...(pageRequest.n === undefined ? {} : { limit: pageRequest.n + 1 }),
  })
  if (tags.length === 0 && pageRequest.last === undefined) {
    if (!(await registry.content.holdsSomething(target))) {
      throw new OciError('NAME_UNKNOWN', {
        message: `nothing was pushed to ${name}`,
        detail: { name },
      })
    }
  }
  tags.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const path = `/v2/${name}/tags/list`
  return reply.send({ name, tags: page(reply, path, tags, pageRequest) })
}

export async function listReferrers(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawDigest: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const { digest } = parseDigest(rawDigest)
  const artifactType = queryValue(request, 'artifactType')
  await registry.authorize(request, name, 'pull')
  const target = await registry.resolve(image)

  const manifests: Record<string, unknown>[] = []
  for (const referrer of await registry.content.referrers(target, digest)) {
    const manifest = await registry.content.manifest(target, referrer)
    if (!manifest) continue
    const record = manifest.value
    // The artifactType is only in the manifest itself (the record has no such field).
    const bytes = await registry.manifests.bytes(target.owner, manifest).catch(() => null)
    if (!bytes) continue
    let document: ManifestDocument
    try {
      document = parseManifest(bytes, record.mediaType)
    } catch {
      continue
    }
    const type = artifactTypeOf(document)
    if (artifactType !== undefined && type !== artifactType) continue
    const descriptor: Record<string, unknown> = {
      mediaType: record.mediaType,
      digest: referrer,
      size: bytes.byteLength,
    }
    if (type !== undefined) descriptor.artifactType = type
    if (document.annotations) descriptor.annotations = document.annotations
    manifests.push(descriptor)
  }
  manifests.sort((a, b) => (String(a.digest) < String(b.digest) ? -1 : 1))
  if (artifactType !== undefined) reply.header('oci-filters-applied', 'artifactType')
  // As bytes: fastify would append a charset to the media type of a serialized object.
  const index = { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests }
  return reply.type(OCI_IMAGE_INDEX).send(Buffer.from(JSON.stringify(index)))
}

export async function listCatalog(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const pageRequest = parsePageRequest(request.query as Record<string, unknown>)
  const caller = await registry.ctx.auth.authenticate(request)
  // Every listed repository is public in its owner's PDS anyway: any signed-in caller (or
  // a token with the catalog scope) may list them.
  if (caller.did === null && !scopeAllows(caller.access, CATALOG_SCOPE, '*')) {
    throw registry.challenge(caller, [CATALOG_SCOPE])
  }
  const limit = pageRequest.n === undefined ? undefined : pageRequest.n + 1
  // With a live consumer the index knows the network's repositories (this AppView's pushes
  // among them); else only what was pushed here is listed.
  const names = (await registry.ctx.ingest.live())
    ? await registry.ctx.index.catalog(pageRequest.last, limit)
    : await registry.links.catalog(pageRequest.last, limit)
  let repositories = names
  if (pageRequest.n !== undefined && names.length > pageRequest.n) {
    repositories = names.slice(0, pageRequest.n)
    reply.header(
      'link',
      buildNextLink('/v2/_catalog', {
        n: pageRequest.n,
        last: repositories[repositories.length - 1]!,
      }),
    )
  }
  return reply.send({ repositories })
}
