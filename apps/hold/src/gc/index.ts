// Garbage collection of blobs: mark and sweep.
//
// Mark: every digest a layer record names (layer records are the hold's references: a
// push writes one per layer and one for the config blob), plus every digest with an upload
// in progress (the hold_upload table). Sweep: every blob under `blobs/` that is not marked
// AND was last written longer than gc.grace_period ago. The grace period protects pushes
// in flight, whose blobs land before notifyManifest writes their layer records.
//
// It writes no records, so it runs beside a serving hold (the CLI does not take the data
// dir lock). Before each deletion the references of that digest are read again, and the
// blob's age checked again, so a push that started after the mark is not broken. In the
// server that last check and the delete run under the record lock, which notifyManifest
// also holds while it writes layer records; the CLI, another process, cannot share it and
// relies on the grace period and that last check alone.
import type { Logger } from '@atcr/core/log'
import { isDigest } from '@atcr/core/oci'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../db/schema.ts'
import { isDigestReferenced, referencedDigests } from '../layers/index.ts'
import type { StorageDriver } from '../storage/index.ts'

/** What a collection needs: the database (references) and the blob storage. */
export interface GcDeps {
  db: Kysely<HoldSchema>
  storage: StorageDriver
  /** Seconds; unreferenced blobs younger than this are kept. */
  gracePeriod: number
  logger?: Logger
  /** Serializes each last check and delete with record writes (the server's record lock). */
  lock?: <T>(task: () => Promise<T>) => Promise<T>
}

export interface GcOptions {
  /** Report what would be deleted, delete nothing. */
  dryRun: boolean
  /** The time the grace period counts back from (tests); defaults to now. */
  now?: Date
  /** Told as the collection goes (after each blob listed or handled): the admin pages show it. */
  onProgress?: (progress: GcProgress) => void
}

export interface GcProgress {
  phase: 'scanning' | 'deleting' | 'done'
  blobsScanned: number
  /** Unreferenced blobs past the grace period, found so far. */
  candidates: number
  /** Candidates handled so far (deleted, kept at the last check, or failed). */
  handled: number
}

export interface GcBlob {
  digest: string
  path: string
  size: number
  modifiedAt: string
}

export interface GcFailure {
  digest: string
  path: string
  error: string
}

export interface GcReport {
  dryRun: boolean
  startedAt: string
  finishedAt: string
  gracePeriodSeconds: number
  /** Blobs found under `blobs/`, and their bytes. */
  blobsScanned: number
  bytesScanned: number
  /** Kept: named by a layer record. */
  keptReferenced: number
  /** Kept: an upload of the digest is in progress. */
  keptUploading: number
  /** Kept: unreferenced, but younger than the grace period. */
  keptRecent: number
  /** Kept: found referenced or rewritten at the last check before deletion. */
  keptAtRecheck: number
  /** Objects under `blobs/` that are not blobs of the hold's layout; never touched. */
  ignoredObjects: number
  /** Deleted blobs (in a dry run: those that would be). */
  deleted: GcBlob[]
  reclaimedBytes: number
  /** Deletions that failed (the blobs stay; a later run retries). */
  failed: GcFailure[]
}

// blobs/<algorithm>/<first two hex>/<hex>/data, as storage/paths.ts lays them out.
const BLOB_PATH = /^blobs\/([a-z0-9]+)\/([a-f0-9]{2})\/([a-f0-9]+)\/data$/

/** The digest a blob path stores, or null for anything else. */
export function digestOfBlobPath(path: string): string | null {
  const match = BLOB_PATH.exec(path)
  if (!match) return null
  const [, algorithm, prefix, hex] = match
  if (!hex?.startsWith(prefix ?? '')) return null
  const digest = `${algorithm}:${hex}`
  return isDigest(digest) ? digest : null
}

/** Runs one collection (or a dry run) and reports what it found and did. */
export async function collectGarbage(deps: GcDeps, options: GcOptions): Promise<GcReport> {
  const { db, storage, logger } = deps
  const lock = deps.lock ?? ((task) => task())
  const started = new Date()
  const cutoff = (options.now ?? started).getTime() - deps.gracePeriod * 1000
  const report: GcReport = {
    dryRun: options.dryRun,
    startedAt: started.toISOString(),
    finishedAt: started.toISOString(),
    gracePeriodSeconds: deps.gracePeriod,
    blobsScanned: 0,
    bytesScanned: 0,
    keptReferenced: 0,
    keptUploading: 0,
    keptRecent: 0,
    keptAtRecheck: 0,
    ignoredObjects: 0,
    deleted: [],
    reclaimedBytes: 0,
    failed: [],
  }

  // Mark before listing: a reference added after this is caught by the last check.
  const referenced = await referencedDigests(db)
  const uploading = await uploadingDigests(db)

  const candidates: GcBlob[] = []
  const tell = (phase: GcProgress['phase'], handled: number) =>
    options.onProgress?.({
      phase,
      blobsScanned: report.blobsScanned,
      candidates: candidates.length,
      handled,
    })
  for await (const object of storage.list('blobs')) {
    tell('scanning', 0)
    const digest = digestOfBlobPath(object.path)
    if (digest === null) {
      report.ignoredObjects += 1
      continue
    }
    report.blobsScanned += 1
    report.bytesScanned += object.size
    if (referenced.has(digest)) report.keptReferenced += 1
    else if (uploading.has(digest)) report.keptUploading += 1
    else if (object.modifiedAt.getTime() > cutoff) report.keptRecent += 1
    else {
      candidates.push({
        digest,
        path: object.path,
        size: object.size,
        modifiedAt: object.modifiedAt.toISOString(),
      })
    }
  }

  let handled = 0
  for (const blob of candidates) {
    tell('deleting', handled++)
    if (options.dryRun) {
      report.deleted.push(blob)
      report.reclaimedBytes += blob.size
      continue
    }
    try {
      const deleted = await lock(async () => {
        if (await isDigestReferenced(db, blob.digest)) return false
        if ((await uploadingDigests(db, blob.digest)).size > 0) return false
        const current = await storage.stat(blob.path)
        if (!current || current.modifiedAt.getTime() > cutoff) return false
        await storage.delete(blob.path)
        return true
      })
      if (deleted) {
        report.deleted.push(blob)
        report.reclaimedBytes += blob.size
      } else {
        report.keptAtRecheck += 1
      }
    } catch (error) {
      const message = (error as Error).message ?? String(error)
      logger?.warn({ err: error, digest: blob.digest }, 'gc could not delete a blob')
      report.failed.push({ digest: blob.digest, path: blob.path, error: message })
    }
  }

  report.finishedAt = new Date().toISOString()
  tell('done', handled)
  logger?.info(
    {
      dryRun: report.dryRun,
      scanned: report.blobsScanned,
      deleted: report.deleted.length,
      reclaimedBytes: report.reclaimedBytes,
      failed: report.failed.length,
    },
    report.dryRun ? 'gc dry run finished' : 'gc finished',
  )
  return report
}

/** Digests with an upload in progress (any state), or only `digest` when given. */
async function uploadingDigests(db: Kysely<HoldSchema>, digest?: string): Promise<Set<string>> {
  // An upload initiated without a digest is named when its completion begins (see
  // completeUpload): from then on it keeps its blob here too.
  let query = db
    .selectFrom('hold_upload')
    .select('digest')
    .distinct()
    .where('digest', 'is not', null)
  if (digest !== undefined) query = query.where('digest', '=', digest)
  const rows = await query.execute()
  return new Set(rows.flatMap((row) => (row.digest === null ? [] : [row.digest])))
}
