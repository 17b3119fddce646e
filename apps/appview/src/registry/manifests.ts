// GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>: manifests as io.atcr.manifest
// records (with the exact bytes as their manifestBlob) and tags as io.atcr.tag records in
// the owner's PDS.
import {
  type ChildManifestInfo,
  type ManifestInfo,
  type NotifyManifestInput,
  NSID,
  SELF_RKEY,
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
import {
  type ManifestDocument,
  parseManifest,
  requiredBlobs,
} from '../records/manifest-document.ts'
import {
  contentDigest,
  type ManifestRecordJson,
  type StoredManifest,
  type StoredTag,
} from '../records/stores.ts'
import type { LinkState } from './content-links.ts'
import { header, readBody } from './http.ts'
import type { Registry, Target } from './registry.ts'
import { registryPath } from './routes.ts'

const BLOB_CHECK_CONCURRENCY = 8

/** The manifest a reference names in the repository, and the digest to answer with. */
async function findManifest(
  registry: Registry,
  target: Target,
  reference: ManifestReference,
): Promise<{ manifest: StoredManifest; digest: string; tag?: string }> {
  if (reference.kind === 'tag') {
    const tag = await registry.tags.get(target.owner, target.repository, reference.tag)
    const manifest = tag ? await registry.manifests.get(target.owner, tag.digest) : null
    if (!manifest) {
      throw new OciError('MANIFEST_UNKNOWN', {
        message: `no tag ${reference.tag} in ${target.name}`,
        detail: { tag: reference.tag },
      })
    }
    return { manifest, digest: contentDigest(manifest.value), tag: reference.tag }
  }
  const manifest = await registry.content.manifest(target, reference.digest)
  if (!manifest) {
    throw new OciError('MANIFEST_UNKNOWN', {
      message: `manifest ${reference.digest} is unknown in ${target.name}`,
      detail: { digest: reference.digest },
    })
  }
  return { manifest, digest: reference.digest }
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
  const { manifest, digest, tag } = await findManifest(registry, target, reference)
  const mediaType = manifest.value.mediaType
  reply.header('docker-content-digest', digest).header('etag', `"${digest}"`).type(mediaType)
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

/**
 * MANIFEST_BLOB_UNKNOWN unless the repository holds everything the manifest references
 * (blobs uploaded or mounted into it, child manifests pushed to it). Returns the sha256
 * digests of the sha512 ones, which the record needs.
 */
async function checkReferences(
  registry: Registry,
  target: Target,
  hold: Hold,
  document: ManifestDocument,
): Promise<Map<string, string>> {
  const sha256Of = new Map<string, string>()
  if (document.kind === 'index') {
    const children = await mapLimit(document.manifests, BLOB_CHECK_CONCURRENCY, async (child) => ({
      child,
      found: await registry.content.manifest(target, child.digest),
    }))
    for (const { child, found } of children) {
      if (!found) {
        throw new OciError('MANIFEST_BLOB_UNKNOWN', {
          message: `the index lists manifest ${child.digest}, which was not pushed to ${target.name}`,
          detail: { digest: child.digest },
        })
      }
      if (child.digest !== found.digest) sha256Of.set(child.digest, found.digest)
    }
  } else {
    const blobs = requiredBlobs(document)
    const held = await mapLimit(blobs, BLOB_CHECK_CONCURRENCY, (blob) =>
      registry.content.blob(target, blob.digest),
    )
    const missing = blobs.find((_, i) => !held[i])
    if (missing) {
      throw new OciError('MANIFEST_BLOB_UNKNOWN', {
        message: `blob ${missing.digest} is not in ${target.name}: push it first`,
        detail: { digest: missing.digest },
      })
    }
    for (const [i, blob] of blobs.entries()) {
      if (!blob.digest.startsWith('sha512:')) continue
      const holdDid = held[i]?.holdDid ?? hold.did
      const stored = await registry.holds.aliases.storedDigest(holdDid, blob.digest)
      if (stored.startsWith('sha256:')) sha256Of.set(blob.digest, stored)
    }
  }
  // A subject need not be in the registry, but a sha512 one can only be recorded when it is.
  const subject = document.subject?.digest
  if (subject?.startsWith('sha512:')) {
    const found = await registry.content.manifest(target, subject)
    if (found) sha256Of.set(subject, found.digest)
  }
  return sha256Of
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
  const digest = digestOf(bytes, algorithm)
  if (reference.kind === 'digest' && reference.digest !== digest) {
    throw new OciError('DIGEST_INVALID', {
      message: `the manifest's digest is ${digest}, not ${reference.digest}`,
      detail: { expected: reference.digest, actual: digest },
    })
  }
  // Records are keyed by the sha256 of the bytes, whatever digest the client used.
  const recordDigest = algorithm === 'sha256' ? digest : digestOf(bytes, 'sha256')
  const document = parseManifest(bytes, header(request, 'content-type'))

  const hold = await registry.selection.pushHold(target.owner)
  await registry.selection.ensureCrew(callerDid, hold)
  const sha256Of = await checkReferences(registry, target, hold, document)

  const scope = [repositoryScope(name, ['pull', 'push'])]
  const agent = await registry.agentFor(caller, scope)
  const tag = reference.kind === 'tag' ? reference.tag : undefined
  const previousTag = tag ? await registry.tags.get(target.owner, target.repository, tag) : null
  const previousManifest = await registry.manifests.get(target.owner, recordDigest)
  const { owner, repository } = target
  const wasLinked = (await registry.links.manifest(owner.did, repository, digest)).state

  // One record per manifest of the owner: it stays as it is while the repository it names
  // still holds the manifest (another repository pushing the same bytes only links them).
  let stored = previousManifest
  if (!stored || !(await recordStillHeld(registry, target, stored, digest))) {
    stored = await registry.manifests.put(
      agent,
      owner,
      {
        repository,
        digest: recordDigest,
        ...(algorithm === 'sha512' ? { sha512Digest: digest } : {}),
        document,
        sha256Of,
        holdDid: hold.did,
        createdAt: new Date().toISOString(),
      },
      bytes,
    )
  }
  await registry.links.linkManifest(owner.did, repository, {
    digest,
    recordDigest,
    subject: document.subject?.digest ?? null,
  })
  registry.content.changed(target)
  // The tag is written only once its manifest exists, so it never points at nothing.
  if (tag && previousTag?.digest !== recordDigest) {
    await registry.tags.put(agent, owner, {
      repository,
      tag,
      digest: recordDigest,
      mediaType: document.mediaType,
    })
  }
  await registry.remember(target)
  if (tag && previousTag && previousTag.digest !== recordDigest) {
    await removeIfUntagged(registry, agent, target, previousTag.digest)
  }

  const notified = registry.holds.procedure(
    hold,
    NSID.holdNotifyManifest,
    notifyInput(target, recordDigest, stored.value, 'push', tag),
    callerDid,
  )
  // Stats and layer records are the hold's bookkeeping: the push itself succeeded.
  const notifyFailed = (error: unknown) =>
    registry.ctx.logger.warn({ err: error, hold: hold.did }, 'notifyManifest (push) failed')
  if (wasLinked === 'linked') {
    // A new tag for a manifest the repository holds: its layers are on the hold and in the
    // quota already, so the answer does not wait for the hold's bookkeeping.
    notified.catch(notifyFailed)
  } else {
    await notified.catch(async (error: unknown) => {
      if (!(error instanceof HoldXrpcError && error.error === 'QuotaExceeded')) {
        return notifyFailed(error)
      }
      await undoPush(registry, agent, target, {
        digest,
        recordDigest,
        tag,
        previousTag,
        previousManifest,
        wasLinked,
      })
      throw new OciError('DENIED', {
        message: `hold ${hold.did} refused the push: ${error.message || 'storage quota exceeded'}`,
      })
    })
  }

  reply
    .code(201)
    .header('location', registryPath(name, 'manifests', digest))
    .header('docker-content-digest', digest)
  if (document.subject) reply.header('oci-subject', document.subject.digest)
  return reply.send()
}

/** Whether the repository a manifest record names still holds that manifest. */
async function recordStillHeld(
  registry: Registry,
  target: Target,
  record: StoredManifest,
  digest: string,
): Promise<boolean> {
  const named = record.value.repository
  if (named === target.repository) return true
  const link = await registry.links.manifest(target.owner.did, named, digest)
  return link.state !== 'unlinked'
}

/** Puts things back as they were before a push the hold refused. */
async function undoPush(
  registry: Registry,
  agent: Awaited<ReturnType<Registry['agentFor']>>,
  target: Target,
  pushed: {
    digest: string
    recordDigest: string
    tag: string | undefined
    previousTag: StoredTag | null
    previousManifest: StoredManifest | null
    wasLinked: LinkState
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
    if (pushed.wasLinked !== 'linked') {
      await registry.links.unlinkManifest(owner.did, repository, pushed.digest)
      registry.content.changed(target)
    }
    if (!pushed.previousManifest) await registry.manifests.delete(agent, owner, pushed.recordDigest)
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
    await removeIfUntagged(registry, agent, target, tag.digest)
    return reply.code(202).send()
  }
  const manifest = await registry.content.manifest(target, reference.digest)
  if (!manifest) {
    throw new OciError('MANIFEST_UNKNOWN', {
      message: `manifest ${reference.digest} is unknown in ${name}`,
    })
  }
  await removeManifest(registry, agent, target, manifest, reference.digest)
  return reply.code(202).send()
}

/**
 * Deletes a manifest from a repository: its tags there first (at no moment does a tag point
 * at a manifest its repository lost), then its link; the record goes with the last
 * repository of the owner that holds the manifest, and while others still do, it names one
 * of them. `digest` is the digest the repository knows it by.
 */
async function removeManifest(
  registry: Registry,
  agent: Awaited<ReturnType<Registry['agentFor']>>,
  target: Target,
  manifest: StoredManifest,
  digest: string,
): Promise<void> {
  const { owner, repository } = target
  for await (const tag of registry.tags.list(owner, repository)) {
    if (tag.digest === manifest.digest)
      await registry.tags.delete(agent, owner, repository, tag.tag)
  }
  await registry.links.unlinkManifest(owner.did, repository, digest)
  registry.content.changed(target)

  const holders = new Set(await registry.links.repositoriesHolding(owner.did, digest))
  for await (const tag of registry.tags.list(owner)) {
    if (tag.digest === manifest.digest) holders.add(tag.repository)
  }
  const named = manifest.value.repository
  if (named !== repository) {
    const link = await registry.links.manifest(owner.did, named, digest)
    if (link.state !== 'unlinked') holders.add(named)
  }
  holders.delete(repository)
  if (holders.size === 0) {
    await registry.manifests.delete(agent, owner, manifest.digest)
  } else if (named === repository) {
    await registry.manifests.setRepository(agent, owner, manifest, [...holders].sort()[0]!)
  }
}

/**
 * autoRemoveUntagged (the owner's io.atcr.sailor.profile): a manifest that a moved or
 * deleted tag left with no tag in the repository is deleted from it, unless an image index
 * of the repository still lists it. Never fails the request that moved the tag.
 */
async function removeIfUntagged(
  registry: Registry,
  agent: Awaited<ReturnType<Registry['agentFor']>>,
  target: Target,
  recordDigest: string,
): Promise<void> {
  const { owner, repository } = target
  try {
    const profile = await registry.reader.getRecord(
      owner.pds,
      owner.did,
      NSID.sailorProfile,
      SELF_RKEY,
    )
    if (profile?.value.autoRemoveUntagged !== true) return
    for await (const tag of registry.tags.list(owner, repository)) {
      if (tag.digest === recordDigest) return
    }
    const manifest = await registry.content.manifest(target, recordDigest)
    if (!manifest) return
    const listed = (await registry.content.recorded(target)).manifests.some((m) =>
      m.value.manifests?.some((child) => child.digest === recordDigest),
    )
    if (listed) return
    await removeManifest(registry, agent, target, manifest, contentDigest(manifest.value))
    registry.ctx.logger.info(
      { did: owner.did, repository, digest: recordDigest },
      'removed a manifest left untagged (autoRemoveUntagged)',
    )
  } catch (error) {
    registry.ctx.logger.warn(
      { err: error, did: owner.did, repository, digest: recordDigest },
      'removing an untagged manifest failed',
    )
  }
}
