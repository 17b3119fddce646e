// io.atcr.hold.notifyManifest: a manifest was pushed (write layer records, count the push)
// or pulled (count the pull).
//
// Who may call: the user named by `userDid` with their own service token (a push needs
// blob:write, a pull read access), or the hold's trusted AppView as itself on behalf of
// any user (a push still needs `userDid` to hold blob:write: layers are accounted to them).
//
// A push writes one layer record per layer and one for the config blob (layer records are
// the hold's references to its blobs: without one, garbage collection would take the
// config of every image), none for an index (its child manifests are records, not blobs
// of the hold), and skips digests already recorded for the same manifest. A push with
// layer records to write makes one commit of them and its counter, under the record lock
// after the quota check (a push over quota writes nothing at all). A pull, and a push
// that adds no layer record (the same manifest under a new tag), is counted in memory and
// written later in a batch (stats/counter.ts, at most every stats.flush_interval per
// repository): a tag costs the hold no commit.
//
// Sizes are the hold's, not the manifest's: every blob of a push must be stored here, and
// its stored size is what the quota counts and the layer record says (a manifest may
// declare any size; a blob the hold does not store is refused with BlobNotFound).
import {
  type LayerRecord,
  type ManifestInfo,
  manifestRkey,
  type NotifyManifestInput,
  type NotifyManifestOutput,
  NSID,
  RecordKeyError,
  validateRecord,
} from '@atcr/core/lexicons'
import {
  DOCKER_CONTAINER_CONFIG,
  DOCKER_MANIFEST_V2,
  isDigest,
  mediaTypeEssence,
  OCI_IMAGE_CONFIG,
  parseDigest,
} from '@atcr/core/oci'
import { TID } from '@atproto/common'
import type { LexMap } from '@atproto/lex-data'
import type { FastifyInstance } from 'fastify'
import {
  authenticate,
  type HoldCaller,
  PERMISSION,
  permissionsOf,
  requireRead,
  requireWrite,
} from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { layersOfManifest } from '../../../../layers/index.ts'
import { checkQuota } from '../../../../quota/index.ts'
import { withRecordLock } from '../../../../record-lock.ts'
import { countOne, getStats, statsWrite } from '../../../../stats/index.ts'
import { blobPath } from '../../../../storage/index.ts'
import { authRequired, forbidden, invalidRequest, XrpcError } from '../../../error.ts'
import { output, parseInput } from '../../../lexicon.ts'

type Operation = 'push' | 'pull'

const MAX_MEDIA_TYPE = 128

/** A blob a pushed manifest uses, as its layer record will describe it. */
interface ManifestBlob {
  digest: string
  size: number
  mediaType: string
}

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.post(`/xrpc/${NSID.holdNotifyManifest}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdNotifyManifest)
    if (caller.did === null) throw authRequired()
    const input = parseInput(NSID.holdNotifyManifest, request.body)
    return output(NSID.holdNotifyManifest, await notifyManifest(ctx, caller, input))
  })
}

export async function notifyManifest(
  ctx: HoldContext,
  caller: HoldCaller,
  input: NotifyManifestInput,
): Promise<NotifyManifestOutput> {
  const operation = parseOperation(input.operation)
  await authorize(ctx, caller, input.userDid, operation)
  const manifestUri = manifestAtUri(input.userDid, input.manifestDigest)
  const blobs = operation === 'push' ? await storedSizes(ctx, manifestBlobs(input.manifest)) : []

  if (operation === 'pull') {
    // Counted in memory, written in a later batch (stats/pull-counter.ts): no commit here.
    ctx.counters.count(input.userDid, input.repository, 'pull', new Date().toISOString())
    return { success: true, operation, statsUpdated: true }
  }

  return withRecordLock(ctx, async () => {
    const now = new Date().toISOString()
    const recorded = await layersOfManifest(ctx.db.db, ctx.identity.did, manifestUri)
    const known = new Set(recorded.map((layer) => layer.value.digest))
    const fresh = blobs.filter((blob) => !known.has(blob.digest))
    if (fresh.length === 0) {
      // Nothing new to account (a new tag, an index): a count, written in a later batch.
      ctx.counters.count(input.userDid, input.repository, 'push', now)
      return { success: true, operation, statsUpdated: true, layersCreated: 0, postCreated: false }
    }

    const quota = await checkQuota(
      ctx,
      input.userDid,
      new Map(blobs.map((b) => [b.digest, b.size])),
    )
    if (!quota.allowed) {
      const { limit, tier } = quota.policy
      throw new XrpcError(
        403,
        'QuotaExceeded',
        `Storage quota exceeded: ${quota.usage.totalSize} bytes stored plus ${quota.addedBytes} new would pass the limit of ${limit} bytes${tier ? ` of tier ${tier.name}` : ''}`,
      )
    }

    const layerWrites = fresh.map((blob) => {
      const record: LayerRecord = validateRecord(NSID.holdLayer, {
        $type: NSID.holdLayer,
        digest: blob.digest,
        size: blob.size,
        mediaType: blob.mediaType,
        manifest: manifestUri,
        userDid: input.userDid,
        createdAt: now,
      })
      return {
        action: 'create' as const,
        collection: NSID.holdLayer,
        rkey: TID.nextStr(),
        record: record as unknown as LexMap,
      }
    })
    const stats = await getStats(ctx, input.userDid, input.repository)
    const counter = statsWrite(
      input.userDid,
      input.repository,
      stats,
      countOne(stats, operation, now),
      now,
    )
    await ctx.repo.writer.applyWrites([...layerWrites, counter])
    return {
      success: true,
      operation,
      statsUpdated: true,
      layersCreated: layerWrites.length,
      postCreated: false,
    }
  })
}

/**
 * The blobs with the size the hold stores for each: refuses the push when one is missing.
 * Stat'ed before the record lock is taken (GC keeps young blobs, so they stay).
 */
async function storedSizes(ctx: HoldContext, blobs: ManifestBlob[]): Promise<ManifestBlob[]> {
  const stats = await Promise.all(
    blobs.map(async (blob) => {
      const { algorithm, hex } = parseDigest(blob.digest)
      return ctx.storage.stat(blobPath(algorithm, hex))
    }),
  )
  const missing = blobs.filter((_, i) => stats[i] === null).map((blob) => blob.digest)
  if (missing.length > 0) {
    throw new XrpcError(
      400,
      'BlobNotFound',
      `The hold stores no blob ${missing.join(', ')}: upload it before pushing the manifest`,
    )
  }
  return blobs.map((blob, i) => ({ ...blob, size: stats[i]?.size ?? blob.size }))
}

function parseOperation(operation: string | undefined): Operation {
  const value = operation ?? 'push'
  if (value === 'push' || value === 'pull') return value
  throw invalidRequest(`operation must be push or pull, not ${value}`, 'InvalidOperation')
}

async function authorize(
  ctx: HoldContext,
  caller: HoldCaller,
  userDid: string,
  operation: Operation,
): Promise<void> {
  if (caller.trustedAppView) {
    if (operation === 'push' && !(await permissionsOf(ctx, userDid)).has(PERMISSION.blobWrite)) {
      throw forbidden(
        `${userDid} may not write to this hold (needs crew membership with blob:write)`,
      )
    }
    return
  }
  if (caller.did !== userDid) {
    throw new XrpcError(
      403,
      'UserMismatch',
      `The token is for ${caller.did}, the notification for ${userDid}`,
    )
  }
  if (operation === 'push') await requireWrite(ctx, caller)
  else await requireRead(ctx, caller)
}

function manifestAtUri(userDid: string, manifestDigest: string): string {
  try {
    return `at://${userDid}/${NSID.manifest}/${manifestRkey(manifestDigest)}`
  } catch (err) {
    if (err instanceof RecordKeyError) throw invalidRequest(`manifestDigest: ${err.message}`)
    throw err
  }
}

/**
 * The blobs of a pushed manifest, each digest once: its layers and its config. An index
 * (child manifests, no layers) stores no blobs of its own on the hold.
 */
function manifestBlobs(manifest: ManifestInfo): ManifestBlob[] {
  const layers = manifest.layers ?? []
  if (layers.length === 0 && (manifest.manifests?.length ?? 0) > 0) return []
  const blobs = new Map<string, ManifestBlob>()
  layers.forEach((layer, i) => {
    const where = `manifest.layers[${i}]`
    const digest = checkedDigest(layer.digest, where)
    // The layer record holds at most 128 characters, the notification's layerInfo 256.
    if (typeof layer.mediaType !== 'string' || layer.mediaType === '') {
      throw invalidRequest(`${where}.mediaType is missing`)
    }
    if (layer.mediaType.length > MAX_MEDIA_TYPE) {
      throw invalidRequest(`${where}.mediaType is longer than ${MAX_MEDIA_TYPE} characters`)
    }
    if (!blobs.has(digest)) {
      blobs.set(digest, {
        digest,
        size: checkedSize(layer.size, where),
        mediaType: layer.mediaType,
      })
    }
  })
  if (manifest.config) {
    const digest = checkedDigest(manifest.config.digest, 'manifest.config')
    if (!blobs.has(digest)) {
      blobs.set(digest, {
        digest,
        size: checkedSize(manifest.config.size, 'manifest.config'),
        mediaType: configMediaType(manifest),
      })
    }
  }
  return [...blobs.values()]
}

/**
 * The config's media type: the lexicon's blobInfo carries none, so a `mediaType` a client
 * sends anyway is used, else the one its manifest type implies.
 */
function configMediaType(manifest: ManifestInfo): string {
  const given = (manifest.config as { mediaType?: unknown } | undefined)?.mediaType
  if (typeof given === 'string' && given !== '' && given.length <= MAX_MEDIA_TYPE) return given
  const type = manifest.mediaType ? mediaTypeEssence(manifest.mediaType) : ''
  return type === DOCKER_MANIFEST_V2 ? DOCKER_CONTAINER_CONFIG : OCI_IMAGE_CONFIG
}

function checkedDigest(value: unknown, where: string): string {
  if (!isDigest(value)) throw invalidRequest(`${where}.digest is not a valid digest`)
  return value
}

function checkedSize(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidRequest(`${where}.size must be a non-negative integer`)
  }
  return value
}
