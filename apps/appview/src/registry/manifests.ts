// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>: manifests as io.atcr.manifest
// records (with the exact bytes as their manifestBlob) and tags as io.atcr.tag records in
// the owner's PDS.
import {
  type ChildManifestInfo,
  type ManifestInfo,
  type NotifyManifestInput,
  NSID,
} from '@atcr/core/lexicons'
import {
  type DigestAlgorithm,
  digestOf,
  type ManifestReference,
  OciError,
  parseManifestReference,
  repositoryScope,
} from '@atcr/core/oci'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { type Hold, HoldXrpcError } from '../holds/hold-client.ts'
import { clientSafeDid } from '../names.ts'
import {
  type ManifestDocument,
  parseManifest,
  requiredBlobs,
} from '../records/manifest-document.ts'
import type { ManifestRecordJson, StoredManifest, StoredTag } from '../records/stores.ts'
import { header, readBody } from './http.ts'
import type { Registry, Target } from './registry.ts'
import { registryPath } from './routes.ts'

const BLOB_CHECK_CONCURRENCY = 8

async function findManifest(
  registry: Registry,
  target: Target,
  reference: ManifestReference,
): Promise<{ manifest: StoredManifest; tag?: string }> {
  let digest: string
  if (reference.kind === 'tag') {
    const tag = await registry.tags.get(target.owner, target.repository, reference.tag)
    if (!tag) {
      throw new OciError('MANIFEST_UNKNOWN', {
        message: `no tag ${reference.tag} in ${target.name}`,
        detail: { tag: reference.tag },
      })
    }
    digest = tag.digest
  } else {
    digest = reference.digest
  }
  const manifest = await registry.manifests.get(target.owner, digest)
  if (!manifest) {
    throw new OciError('MANIFEST_UNKNOWN', {
      message: `manifest ${digest} is unknown in ${target.name}`,
      detail: { digest },
    })
  }
  return reference.kind === 'tag' ? { manifest, tag: reference.tag } : { manifest }
}

export async function getManifest(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawReference: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const reference = parseManifestReference(rawReference)
  const caller = await registry.authorize(request, name, 'pull')
  const target = await registry.resolve(image)
  const { manifest, tag } = await findManifest(registry, target, reference)
  const mediaType = manifest.value.mediaType
  reply
    .header('docker-content-digest', manifest.digest)
    .header('etag', `"${manifest.digest}"`)
    .type(mediaType)
  if (request.method === 'HEAD') {
    const size = manifest.value.manifestBlob?.size
    if (typeof size === 'number') return reply.header('content-length', size).send()
    const bytes = await registry.manifests.bytes(target.owner, manifest)
    return reply.header('content-length', bytes.byteLength).send()
  }
  const bytes = await registry.manifests.bytes(target.owner, manifest)
  if (caller.did) notifyPull(registry, caller.did, target, manifest, tag)
  return reply.header('content-length', bytes.byteLength).send(Buffer.from(bytes))
}

/** Counts a pull on the manifest's hold; never delays or fails the pull. */
function notifyPull(
  registry: Registry,
  callerDid: string,
  target: Target,
  manifest: StoredManifest,
  tag: string | undefined,
): void {
  const holdDid = manifest.value.holdDid
  if (!holdDid) return
  const task = async () => {
    const hold = await registry.holds.resolve(holdDid)
    await registry.holds.procedure(
      hold,
      NSID.holdNotifyManifest,
      notifyInput(target, manifest.digest, manifest.value, 'pull', tag),
      callerDid,
    )
  }
  task().catch((error: unknown) => {
    registry.ctx.logger.debug({ err: error, hold: holdDid }, 'notifyManifest (pull) failed')
  })
}

function notifyInput(
  target: Target,
  digest: string,
  record: ManifestRecordJson,
  operation: 'push' | 'pull',
  tag: string | undefined,
): NotifyManifestInput {
  const manifest: ManifestInfo = { mediaType: record.mediaType }
  if (record.config) manifest.config = { digest: record.config.digest, size: record.config.size }
  if (record.layers) {
    manifest.layers = record.layers.map((l) => ({
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
    }))
  }
  if (record.manifests) {
    manifest.manifests = record.manifests.map((m) => {
      const child: ChildManifestInfo = {
        digest: m.digest,
        size: m.size,
        mediaType: m.mediaType,
      }
      if (m.platform) child.platform = { os: m.platform.os, architecture: m.platform.architecture }
      return child
    })
  }
  const input: NotifyManifestInput = {
    repository: target.repository,
    userDid: target.owner.did,
    manifestDigest: digest,
    manifest,
    operation,
  }
  if (tag !== undefined) input.tag = tag
  return input
}

async function mapLimit<T, R>(items: T[], limit: number, run: (item: T) => Promise<R>) {
  const results: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await run(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

/** MANIFEST_BLOB_UNKNOWN unless everything the manifest references is already stored. */
async function checkReferences(
  registry: Registry,
  target: Target,
  hold: Hold,
  callerDid: string,
  document: ManifestDocument,
): Promise<void> {
  if (document.kind === 'index') {
    const children = await mapLimit(document.manifests, BLOB_CHECK_CONCURRENCY, async (child) => ({
      child,
      found: await registry.manifests.get(target.owner, child.digest),
    }))
    const missing = children.find((c) => !c.found)
    if (missing) {
      throw new OciError('MANIFEST_BLOB_UNKNOWN', {
        message: `the index lists manifest ${missing.child.digest}, which was not pushed to ${target.name}`,
        detail: { digest: missing.child.digest },
      })
    }
    return
  }
  const blobs = requiredBlobs(document)
  const found = await mapLimit(blobs, BLOB_CHECK_CONCURRENCY, (blob) =>
    registry.holds.hasBlob(hold, blob.digest, callerDid),
  )
  const missing = blobs.find((_, i) => !found[i])
  if (missing) {
    throw new OciError('MANIFEST_BLOB_UNKNOWN', {
      message: `blob ${missing.digest} is not on hold ${hold.did}: push it first`,
      detail: { digest: missing.digest },
    })
  }
}

export async function putManifest(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawReference: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const reference = parseManifestReference(rawReference)
  const caller = await registry.authorize(request, name, 'push')
  const target = await registry.resolve(image)
  const callerDid = registry.assertOwner(caller, target)

  const limit = registry.ctx.config.registry.max_manifest_size
  const bytes = await readBody(
    request,
    limit,
    () =>
      new OciError('MANIFEST_INVALID', {
        message: `the manifest is larger than ${limit} bytes, the most this registry accepts`,
        status: 413,
      }),
  )
  const algorithm: DigestAlgorithm = reference.kind === 'digest' ? reference.algorithm : 'sha256'
  if (algorithm === 'sha512') {
    throw new OciError('MANIFEST_INVALID', {
      message:
        'sha512 manifest digests cannot be recorded: the digest fields of io.atcr.manifest hold at most 128 characters. Push the manifest by tag or by its sha256 digest.',
    })
  }
  const digest = digestOf(bytes, algorithm)
  if (reference.kind === 'digest' && reference.digest !== digest) {
    throw new OciError('DIGEST_INVALID', {
      message: `the manifest's digest is ${digest}, not ${reference.digest}`,
      detail: { expected: reference.digest, actual: digest },
    })
  }
  const document = parseManifest(bytes, header(request, 'content-type'))

  const hold = await registry.selection.pushHold(target.owner)
  await registry.selection.ensureCrew(callerDid, hold)
  await checkReferences(registry, target, hold, callerDid, document)

  const scope = [repositoryScope(name, ['pull', 'push'])]
  const agent = await registry.agentFor(caller, scope)
  const tag = reference.kind === 'tag' ? reference.tag : undefined
  const previousTag = tag ? await registry.tags.get(target.owner, target.repository, tag) : null
  const previousManifest = await registry.manifests.get(target.owner, digest)

  const stored = await registry.manifests.put(
    agent,
    target.owner,
    {
      repository: target.repository,
      digest,
      document,
      holdDid: hold.did,
      createdAt: new Date().toISOString(),
    },
    bytes,
  )
  // The tag is written only once its manifest exists, so it never points at nothing.
  if (tag) {
    await registry.tags.put(agent, target.owner, {
      repository: target.repository,
      tag,
      digest,
      mediaType: document.mediaType,
    })
  }
  registry.pushedTo(target, hold)
  await registry.remember(target, `${clientSafeDid(target.owner.did)}/${target.repository}`)

  try {
    await registry.holds.procedure(
      hold,
      NSID.holdNotifyManifest,
      notifyInput(target, digest, stored.value, 'push', tag),
      callerDid,
    )
  } catch (error) {
    if (error instanceof HoldXrpcError && error.error === 'QuotaExceeded') {
      await undoPush(registry, agent, target, { digest, tag, previousTag, previousManifest })
      throw new OciError('DENIED', {
        message: `hold ${hold.did} refused the push: ${error.message || 'storage quota exceeded'}`,
      })
    }
    // Stats and layer records are the hold's bookkeeping: the push itself succeeded.
    registry.ctx.logger.warn({ err: error, hold: hold.did }, 'notifyManifest (push) failed')
  }

  reply
    .code(201)
    .header('location', registryPath(name, 'manifests', digest))
    .header('docker-content-digest', digest)
  if (document.subject) reply.header('oci-subject', document.subject.digest)
  return reply.send()
}

/** Puts things back as they were before a push the hold refused. */
async function undoPush(
  registry: Registry,
  agent: Awaited<ReturnType<Registry['agentFor']>>,
  target: Target,
  pushed: {
    digest: string
    tag: string | undefined
    previousTag: StoredTag | null
    previousManifest: StoredManifest | null
  },
): Promise<void> {
  const { owner, repository } = target
  try {
    if (pushed.tag) {
      if (pushed.previousTag) {
        const previous = await registry.manifests.get(owner, pushed.previousTag.digest)
        await registry.tags.put(agent, owner, {
          repository,
          tag: pushed.tag,
          digest: pushed.previousTag.digest,
          mediaType: previous?.value.mediaType ?? pushed.previousTag.value.mediaType ?? '',
        })
      } else {
        await registry.tags.delete(agent, owner, repository, pushed.tag)
      }
    }
    if (!pushed.previousManifest) await registry.manifests.delete(agent, owner, pushed.digest)
  } catch (error) {
    registry.ctx.logger.error({ err: error }, 'undoing a refused push failed')
  }
}

export async function deleteManifest(
  registry: Registry,
  request: FastifyRequest,
  reply: FastifyReply,
  name: string,
  rawReference: string,
): Promise<FastifyReply> {
  const image = registry.parseName(name)
  const reference = parseManifestReference(rawReference)
  const caller = await registry.authorize(request, name, 'delete')
  const target = await registry.resolve(image)
  registry.assertOwner(caller, target)
  const agent = await registry.agentFor(caller, [repositoryScope(name, ['delete'])])

  if (reference.kind === 'tag') {
    const tag = await registry.tags.get(target.owner, target.repository, reference.tag)
    if (!tag) {
      throw new OciError('MANIFEST_UNKNOWN', { message: `no tag ${reference.tag} in ${name}` })
    }
    await registry.tags.delete(agent, target.owner, target.repository, reference.tag)
    return reply.code(202).send()
  }
  const manifest = await registry.manifests.get(target.owner, reference.digest)
  if (!manifest) {
    throw new OciError('MANIFEST_UNKNOWN', {
      message: `manifest ${reference.digest} is unknown in ${name}`,
    })
  }
  // Tags go first: at no moment does a tag point at a deleted manifest. Manifest records
  // are keyed by digest alone, so tags of any of the owner's repositories may point here.
  const pointing: StoredTag[] = []
  for await (const tag of registry.tags.list(target.owner)) {
    if (tag.digest === reference.digest) pointing.push(tag)
  }
  for (const tag of pointing) {
    await registry.tags.delete(agent, target.owner, tag.repository, tag.tag)
  }
  await registry.manifests.delete(agent, target.owner, reference.digest)
  return reply.code(202).send()
}
