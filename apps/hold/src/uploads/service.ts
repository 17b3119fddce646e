// Multipart blob uploads: initiate, send parts (to a presigned storage URL or through the
// hold), complete (assemble, verify the digest while streaming, publish under the digest's
// path) or abort; and the sweep of abandoned uploads. The state lives in SQLite, the bytes
// in the storage driver, so an upload survives a restart of the hold.
import { randomBytes } from 'node:crypto'
import { NSID } from '@atcr/core/lexicons'
import { release } from '@atcr/core/memory'
import type { DigestAlgorithm } from '@atcr/core/oci'
import { createDigester, parseDigest } from '@atcr/core/oci'
import type { HoldContext } from '../context.ts'
import {
  type ByteSource,
  blobPath,
  InvalidPartError,
  MAX_PART_NUMBER,
  PartTooSmallError,
  SizeMismatchError,
  StorageError,
  StorageFullError,
  TooLargeError,
  UploadNotFoundError,
  uploadPath,
  uploadPrefix,
} from '../storage/index.ts'
import { XrpcError } from '../xrpc/error.ts'
import {
  admitCompletion,
  admitPart,
  isUnlimited,
  openUploadCap,
  storageFull,
  tooManyUploads,
} from './limits.ts'
import { RunningDigests } from './running-digest.ts'
import {
  claimUpload,
  deleteUpload,
  expireCompletedBlobs,
  getUpload,
  insertUpload,
  listIdleUploads,
  nameUpload,
  recordCompletedBlob,
  recordPart,
  touchUpload,
  type UploadRow,
} from './store.ts'

/** Headers that name the upload and the part in an io.atcr.hold.uploadPart request. */
export const UPLOAD_ID_HEADER = 'X-Upload-Id'
export const PART_NUMBER_HEADER = 'X-Part-Number'

export interface PartUploadTarget {
  url: string
  method: string
  headers: Record<string, string>
}

export interface CompletedPart {
  partNumber: number
  etag: string
}

const SWEEP_BATCH = 100

// One per hold (a context), created on first use.
const runningDigests = new WeakMap<HoldContext, RunningDigests>()

function runningDigestsOf(ctx: HoldContext): RunningDigests {
  let running = runningDigests.get(ctx)
  if (running === undefined) {
    running = new RunningDigests()
    runningDigests.set(ctx, running)
  }
  return running
}

function uploadError(error: string, message: string, status = 400): XrpcError {
  return new XrpcError(status, error, message)
}

/**
 * Opens an upload of a blob that should hash to `digest`, or of a blob named only at
 * completeUpload (a stream whose digest the uploader learns with its last byte); returns
 * its id. Either way completeUpload checks the digest it is given.
 */
export async function initiateUpload(
  ctx: HoldContext,
  uploaderDid: string,
  digest: string | undefined,
): Promise<{ uploadId: string }> {
  if (digest !== undefined) parseUploadDigest(digest)
  const cap = await openUploadCap(ctx, uploaderDid)
  const id = randomBytes(16).toString('base64url')
  let driverUploadId: string
  try {
    driverUploadId = await ctx.storage.createMultipart(uploadPath(id))
  } catch (err) {
    if (err instanceof StorageFullError) throw storageFull('the hold has no space left')
    throw err
  }
  const now = Date.now()
  const row = {
    id,
    digest: digest ?? null,
    uploader_did: uploaderDid,
    driver_upload_id: driverUploadId,
    state: 'open' as const,
    created_at: now,
    updated_at: now,
  }
  if (!(await insertUpload(ctx.db, row, cap))) {
    await ctx.storage.abortMultipart(driverUploadId)
    throw tooManyUploads(cap ?? 0)
  }
  ctx.logger.debug(
    { uploadId: id, digest: digest ?? null, uploader: uploaderDid },
    'upload initiated',
  )
  return { uploadId: id }
}

/**
 * Where part `partNumber` goes: a presigned storage URL when the driver can presign,
 * presigned redirects are on and nothing limits the caller (the hold never sees the bytes
 * of a presigned part, so it could not count them), otherwise this hold's
 * io.atcr.hold.uploadPart (the caller adds its own Authorization header).
 */
export async function getPartUploadUrl(
  ctx: HoldContext,
  callerDid: string,
  uploadId: string,
  partNumber: number,
): Promise<PartUploadTarget> {
  checkPartNumber(partNumber)
  const upload = await openUpload(ctx, callerDid, uploadId)
  await touchUpload(ctx.db, upload.id, Date.now())
  if (ctx.config.storage.presigned_redirects && (await isUnlimited(ctx, callerDid))) {
    const presigned = await ctx.storage.presignPart(upload.driver_upload_id, partNumber)
    if (presigned)
      return { url: presigned.url, method: presigned.method, headers: presigned.headers }
  }
  return {
    url: `${ctx.identity.publicUrl}/xrpc/${NSID.holdUploadPart}`,
    method: 'PUT',
    headers: { [UPLOAD_ID_HEADER]: upload.id, [PART_NUMBER_HEADER]: String(partNumber) },
  }
}

/**
 * Stores one part sent through the hold, streaming it to the driver. `size` is the declared
 * length; `handOver` gives the source's chunks to storage (see `StorageDriver.writePart`).
 * Parts sent in order are hashed as they pass (see `running-digest.ts`). Blobs named only
 * at completion are hashed as sha256, the algorithm nearly every client uses.
 */
export async function uploadPart(
  ctx: HoldContext,
  callerDid: string,
  uploadId: string,
  partNumber: number,
  source: ByteSource,
  options: { size?: number; handOver?: boolean } = {},
): Promise<{ etag: string }> {
  checkPartNumber(partNumber)
  const upload = await openUpload(ctx, callerDid, uploadId)
  await touchUpload(ctx.db, upload.id, Date.now())
  const admission = await admitPart(ctx, callerDid, {
    uploadId: upload.id,
    partNumber,
    ...(options.size === undefined ? {} : { size: options.size }),
  })
  const algorithm = upload.digest === null ? 'sha256' : parseUploadDigest(upload.digest).algorithm
  const tap = runningDigestsOf(ctx).tap(upload.id, partNumber, algorithm)
  const counted = admission.through(source)
  try {
    const part = await ctx.storage.writePart(
      upload.driver_upload_id,
      partNumber,
      tap ? tap.through(counted) : counted,
      options,
    )
    tap?.commit(part.etag)
    admission.settle(part.size - (await recordPart(ctx.db, upload.id, partNumber, part.size)))
    await touchUpload(ctx.db, upload.id, Date.now())
    return { etag: part.etag }
  } catch (err) {
    if (err instanceof XrpcError) throw err
    if (err instanceof StorageFullError) throw storageFull('the hold has no space left')
    if (err instanceof UploadNotFoundError) {
      throw uploadError('InvalidUploadId', 'The upload no longer exists')
    }
    if (err instanceof SizeMismatchError) throw uploadError('UploadFailed', err.message)
    if (err instanceof TooLargeError) throw uploadError('UploadFailed', err.message, 413)
    if (err instanceof InvalidPartError) throw uploadError('InvalidPartNumber', err.message)
    if (err instanceof StorageError) {
      ctx.logger.error({ err, uploadId }, 'storing an upload part failed')
      throw uploadError('UploadFailed', 'The part could not be stored', 500)
    }
    // The request body failed (the client went away): nothing to answer.
    throw err
  } finally {
    tap?.end()
    admission.end()
  }
}

/**
 * Joins the parts, hashes the assembled bytes, and only when they hash to `digest` moves
 * them to the blob's path, where readers can see them. Parts hashed as they arrived (in
 * order, through the hold) are not hashed again. Otherwise drivers that assemble through
 * the hold (filesystem) show the bytes to the hasher as they write them, so nothing is read
 * twice; failing that (S3 assembles server-side, or an earlier attempt had assembled them
 * already) the assembled object is read back through the hasher. On a mismatch the
 * assembled data is deleted and the upload is over (InvalidDigest).
 */
export async function completeUpload(
  ctx: HoldContext,
  callerDid: string,
  uploadId: string,
  digest: string,
  parts: readonly CompletedPart[],
): Promise<{ status: 'completed'; digest: string }> {
  const expected = parseUploadDigest(digest)
  const sorted = sortParts(parts)
  const upload = await openUpload(ctx, callerDid, uploadId)
  await admitCompletion(
    ctx,
    callerDid,
    upload.id,
    sorted.map((p) => p.partNumber),
  )
  if (!(await claimUpload(ctx.db, upload.id, ['open'], 'completing', Date.now()))) {
    throw uploadError('InvalidUploadId', 'The upload is already being completed or aborted')
  }
  const reopen = () => claimUpload(ctx.db, upload.id, ['completing'], 'open', Date.now())
  // Garbage collection keeps the blob of an upload in progress: name it before it exists.
  if (upload.digest !== expected.digest) await nameUpload(ctx.db, upload.id, expected.digest)
  const assembled = uploadPath(upload.id)
  let running = runningDigestsOf(ctx).digestOf(upload.id, expected.algorithm, sorted)
  const digester = running === null ? createDigester(expected.algorithm) : null
  let hashed = false
  try {
    const result = await ctx.storage.completeMultipart(
      upload.driver_upload_id,
      sorted,
      digester ? { onData: (chunk) => digester.update(chunk) } : {},
    )
    hashed = result.observed === true
  } catch (err) {
    // The driver may have finished the assembly before an interruption (a crash, a lost
    // answer): when the assembled bytes are there, carry on with them.
    const assembledBefore =
      err instanceof UploadNotFoundError && (await ctx.storage.stat(assembled)) !== null
    if (!assembledBefore) await failCompletion(ctx, upload, err, reopen)
    // Assembled by an earlier attempt, maybe from other parts: hash what is there.
    running = null
  }

  let actual: string
  try {
    actual =
      running ??
      (hashed && digester
        ? digester.digest()
        : await digestOfStored(ctx, assembled, expected.algorithm))
  } catch (err) {
    await reopenAfterFailure(ctx, upload.id, reopen)
    ctx.logger.error({ err, uploadId }, 'reading back an assembled upload failed')
    throw uploadError('CompletionFailed', 'The assembled blob could not be verified', 500)
  }
  if (actual !== expected.digest) {
    await discardUpload(ctx, upload).catch((err: unknown) => {
      // The state stays behind (completing): the sweeper removes it after the expiry.
      ctx.logger.warn({ err, uploadId }, 'discarding a mismatched upload failed')
    })
    throw uploadError(
      'InvalidDigest',
      `The uploaded bytes hash to ${actual}, not ${expected.digest}; the upload was discarded`,
    )
  }

  const target = blobPath(expected.algorithm, expected.hex)
  try {
    // Content-addressed: a blob already stored under this digest has these very bytes.
    if (!(await ctx.storage.stat(target))) await ctx.storage.move(assembled, target)
  } catch (err) {
    await reopenAfterFailure(ctx, upload.id, reopen)
    if (err instanceof StorageFullError) throw storageFull('the blob could not be stored')
    ctx.logger.error({ err, uploadId }, 'publishing an upload failed')
    throw uploadError('CompletionFailed', 'The blob could not be stored', 500)
  }
  // Counted against the uploader's quota from now until a push of theirs names it.
  const stored = await ctx.storage.stat(target)
  await recordCompletedBlob(ctx.db, callerDid, expected.digest, stored?.size ?? 0, Date.now())
  await deleteUpload(ctx.db, upload.id)
  runningDigestsOf(ctx).forget(upload.id)
  // What is left (the assembled copy of a blob stored before) is the sweeper's if this fails.
  await ctx.storage.deletePrefix(uploadPrefix(upload.id)).catch((err: unknown) => {
    ctx.logger.warn({ err, uploadId }, 'removing upload leftovers failed')
  })
  ctx.logger.info({ digest: expected.digest, uploader: callerDid }, 'blob uploaded')
  return { status: 'completed', digest: expected.digest }
}

/**
 * io.atcr.hold.uploadBlob: a whole blob in one request, as initiateUpload, one uploadPart
 * and completeUpload would store it (the same limits, the same digest check). Whatever
 * fails before the blob is stored leaves no upload behind.
 */
export async function uploadBlob(
  ctx: HoldContext,
  callerDid: string,
  digest: string,
  source: ByteSource,
  options: { size?: number; handOver?: boolean } = {},
): Promise<{ status: 'completed'; digest: string }> {
  const { uploadId } = await initiateUpload(ctx, callerDid, digest)
  try {
    const { etag } = await uploadPart(ctx, callerDid, uploadId, 1, source, options)
    const done = await completeUpload(ctx, callerDid, uploadId, digest, [{ partNumber: 1, etag }])
    ctx.logger.debug({ uploadId, digest }, 'blob uploaded in one call')
    return done
  } catch (err) {
    // A mismatch was discarded already; anything else is abandoned here.
    await abortUpload(ctx, callerDid, uploadId).catch(() => {})
    throw err
  }
}

/** Abandons an upload: the driver drops its parts, the hold its temp data and state. */
export async function abortUpload(
  ctx: HoldContext,
  callerDid: string,
  uploadId: string,
): Promise<{ status: 'aborted' }> {
  const upload = await findUpload(ctx, callerDid, uploadId)
  // An earlier abort that failed half-way may be retried.
  if (!(await claimUpload(ctx.db, upload.id, ['open', 'aborting'], 'aborting', Date.now()))) {
    throw uploadError('InvalidUploadId', 'The upload is being completed')
  }
  try {
    await discardUpload(ctx, upload)
  } catch (err) {
    ctx.logger.error({ err, uploadId }, 'aborting an upload failed')
    throw uploadError('AbortFailed', 'The upload could not be discarded; try again', 500)
  }
  return { status: 'aborted' }
}

export interface SweepResult {
  /** Abandoned uploads removed. */
  aborted: number
  /** Leftover upload folders in storage without any upload state. */
  orphans: number
}

/**
 * Removes uploads without activity for longer than `uploads.expiry` (parts, assembled
 * data, state), then storage leftovers under `uploads/` that no upload owns any more
 * (a crash between two steps). Failures are logged; the next sweep tries again.
 */
export async function sweepExpiredUploads(
  ctx: HoldContext,
  options: { now?: number } = {},
): Promise<SweepResult> {
  const now = options.now ?? Date.now()
  const cutoff = now - ctx.config.uploads.expiry * 1000
  const result: SweepResult = { aborted: 0, orphans: 0 }
  // Claimed rows carry `now` and leave the idle list; `seen` guards against any that stay.
  const seen = new Set<string>()
  for (;;) {
    const idle = (await listIdleUploads(ctx.db, cutoff, SWEEP_BATCH)).filter(
      (row) => !seen.has(row.id),
    )
    if (idle.length === 0) break
    for (const row of idle) {
      seen.add(row.id)
      const states = ['open', 'completing', 'aborting'] as const
      if (!(await claimUpload(ctx.db, row.id, states, 'aborting', now, cutoff))) continue
      try {
        await discardUpload(ctx, row)
        result.aborted++
      } catch (err) {
        ctx.logger.warn({ err, uploadId: row.id }, 'removing an abandoned upload failed')
      }
    }
  }

  const leftovers = new Set<string>()
  for await (const object of ctx.storage.list('uploads')) {
    const id = object.path.split('/')[1]
    if (id !== undefined && object.modifiedAt.getTime() < cutoff) leftovers.add(id)
  }
  for (const id of leftovers) {
    if (await getUpload(ctx.db, id)) continue
    try {
      await ctx.storage.deletePrefix(uploadPrefix(id))
      result.orphans++
    } catch (err) {
      ctx.logger.warn({ err, uploadId: id }, 'removing leftover upload data failed')
    }
  }
  // Past the grace period garbage collection may take an unpushed blob: it stops counting.
  await expireCompletedBlobs(ctx.db, now - ctx.config.gc.grace_period * 1000)
  if (result.aborted > 0 || result.orphans > 0) {
    ctx.logger.info(result, 'swept abandoned uploads')
  }
  return result
}

/** Hashes a stored object as it streams back from storage. */
async function digestOfStored(
  ctx: HoldContext,
  path: string,
  algorithm: DigestAlgorithm,
): Promise<string> {
  const digester = createDigester(algorithm)
  for await (const chunk of await ctx.storage.read(path)) {
    digester.update(chunk as Uint8Array)
    // Only hashed, here alone: its memory is free at once, not after the next full GC.
    release(chunk as Uint8Array)
  }
  return digester.digest()
}

function parseUploadDigest(digest: string): {
  algorithm: DigestAlgorithm
  hex: string
  digest: string
} {
  try {
    return parseDigest(digest)
  } catch (err) {
    throw uploadError('InvalidDigest', err instanceof Error ? err.message : 'invalid digest')
  }
}

/** InvalidPartNumber unless `partNumber` is 1 .. 10000. */
export function checkPartNumber(partNumber: number): void {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
    throw uploadError('InvalidPartNumber', `Part numbers run from 1 to ${MAX_PART_NUMBER}`)
  }
}

/**
 * The parts of a completeUpload in order. A bad list is InvalidRequest: completeUpload's
 * lexicon declares no InvalidPartNumber (getPartUploadUrl's and uploadPart's do).
 */
function sortParts(parts: readonly CompletedPart[]): CompletedPart[] {
  if (parts.length === 0) throw uploadError('MissingParts', 'No parts were listed')
  const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber)
  for (const [index, part] of sorted.entries()) {
    if (!Number.isInteger(part.partNumber) || part.partNumber > MAX_PART_NUMBER) {
      throw uploadError('InvalidRequest', `Part numbers run from 1 to ${MAX_PART_NUMBER}`)
    }
    if (index > 0 && sorted[index - 1]?.partNumber === part.partNumber) {
      throw uploadError('InvalidRequest', `Part ${part.partNumber} is listed twice`)
    }
  }
  return sorted
}

/** The caller's upload, in any state; another account's upload is as good as unknown. */
async function findUpload(ctx: HoldContext, callerDid: string, uploadId: string) {
  const upload = await getUpload(ctx.db, uploadId)
  if (!upload || upload.uploader_did !== callerDid) {
    throw uploadError('InvalidUploadId', 'No such upload')
  }
  return upload
}

async function openUpload(ctx: HoldContext, callerDid: string, uploadId: string) {
  const upload = await findUpload(ctx, callerDid, uploadId)
  if (upload.state !== 'open') {
    throw uploadError('InvalidUploadId', 'The upload is being completed or aborted')
  }
  return upload
}

/** Maps a failed assembly to the lexicon's errors; the upload stays open when it can. */
async function failCompletion(
  ctx: HoldContext,
  upload: UploadRow,
  err: unknown,
  reopen: () => Promise<boolean>,
): Promise<never> {
  if (err instanceof UploadNotFoundError) {
    await deleteUpload(ctx.db, upload.id)
    throw uploadError('InvalidUploadId', 'The upload no longer exists')
  }
  await reopenAfterFailure(ctx, upload.id, reopen)
  if (err instanceof InvalidPartError) {
    throw uploadError('MissingParts', `Parts are missing or do not match: ${err.message}`)
  }
  if (err instanceof PartTooSmallError) throw uploadError('CompletionFailed', err.message)
  if (err instanceof StorageFullError) throw storageFull('the blob could not be assembled')
  if (err instanceof StorageError) {
    ctx.logger.error({ err, uploadId: upload.id }, 'assembling an upload failed')
    throw uploadError('CompletionFailed', 'The parts could not be assembled', 500)
  }
  throw err
}

async function reopenAfterFailure(
  ctx: HoldContext,
  uploadId: string,
  reopen: () => Promise<boolean>,
): Promise<void> {
  try {
    await reopen()
  } catch (err) {
    ctx.logger.warn({ err, uploadId }, 'could not reopen an upload after a failure')
  }
}

/** Drops everything an upload left: the driver's parts, temp data, then its state. */
async function discardUpload(ctx: HoldContext, upload: UploadRow): Promise<void> {
  await ctx.storage.abortMultipart(upload.driver_upload_id)
  await ctx.storage.deletePrefix(uploadPrefix(upload.id))
  await deleteUpload(ctx.db, upload.id)
  runningDigestsOf(ctx).forget(upload.id)
}
