// Test data for a hold: digests, notifyManifest inputs, and blobs and crew records written
// straight into a hold's storage and repo (as a finished upload or an import leaves them).
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { type ManifestInfo, type NotifyManifestInput, NSID } from '@atcr/core/lexicons'
import type { HoldContext } from '../src/context.ts'
import { blobPath } from '../src/storage/index.ts'

export const MiB = 1024 * 1024
export const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

/** The sha256 digest of some bytes, or of a text: distinct, valid digests for made-up blobs. */
export function digestOf(data: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export interface BlobSpec {
  digest: string
  size: number
}

/** The manifest part of a notifyManifest input: layers and a config. */
export function imageManifest(layers: BlobSpec[], config: BlobSpec): ManifestInfo {
  return {
    mediaType: OCI_MANIFEST,
    config: { digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: LAYER_TYPE })),
  }
}

export function pushInput(
  userDid: string,
  repository: string,
  manifestDigest: string,
  manifest: ManifestInfo,
  extra: Partial<NotifyManifestInput> = {},
): NotifyManifestInput {
  return { repository, userDid, manifestDigest, manifest, operation: 'push', ...extra }
}

/** Stores `bytes` as the blob of `digest` (the digest need not match: GC does not hash). */
export async function putBlob(ctx: HoldContext, digest: string, bytes: Uint8Array) {
  const [algorithm = '', hex = ''] = digest.split(':')
  const path = blobPath(algorithm, hex)
  await ctx.storage.write(path, Readable.from([Buffer.from(bytes)]))
  return path
}

/** Stores `bytes` under their own sha256 digest, which it returns. */
export async function storeBlob(ctx: HoldContext, bytes: Uint8Array): Promise<string> {
  const digest = digestOf(bytes)
  await putBlob(ctx, digest, bytes)
  return digest
}

/**
 * Writes a crew record under `rkey` directly (no requestCrew): role `write` with
 * blob:write, else `read`.
 */
export async function putCrewRecord(
  ctx: HoldContext,
  rkey: string,
  member: string,
  permissions: string[] = ['blob:read', 'blob:write'],
) {
  await ctx.repo.writer.upsertRecord(NSID.holdCrew, rkey, {
    $type: NSID.holdCrew,
    member,
    role: permissions.includes('blob:write') ? 'write' : 'read',
    permissions,
    addedAt: new Date().toISOString(),
  })
}

/** Stores a blob of `size` zero bytes for each spec (a push needs its blobs on the hold). */
export async function storeBlobs(ctx: HoldContext, ...blobs: BlobSpec[]): Promise<void> {
  for (const blob of blobs) await putBlob(ctx, blob.digest, new Uint8Array(blob.size))
}
