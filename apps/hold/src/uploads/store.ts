// The hold_upload table: one row per multipart upload in progress.
import type { HoldDatabase } from '../db/index.ts'
import type { HoldUploadTable } from '../db/schema.ts'

export type UploadRow = HoldUploadTable
export type UploadState = HoldUploadTable['state']

/**
 * Adds an upload, unless its uploader has `maxOpen` uploads already (false then); the
 * count and the insert are one transaction, so racing uploads cannot pass the cap.
 */
export async function insertUpload(
  db: HoldDatabase,
  row: UploadRow,
  maxOpen?: number,
): Promise<boolean> {
  return db.db.transaction().execute(async (tx) => {
    if (maxOpen !== undefined) {
      const { n } = await tx
        .selectFrom('hold_upload')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('uploader_did', '=', row.uploader_did)
        .executeTakeFirstOrThrow()
      if (Number(n) >= maxOpen) return false
    }
    await tx.insertInto('hold_upload').values(row).execute()
    return true
  })
}

export async function getUpload(db: HoldDatabase, id: string): Promise<UploadRow | null> {
  const row = await db.db
    .selectFrom('hold_upload')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirst()
  return row ?? null
}

/** Records activity on an open upload; false when it is not (or no longer) open. */
export async function touchUpload(db: HoldDatabase, id: string, now: number): Promise<boolean> {
  const result = await db.db
    .updateTable('hold_upload')
    .set({ updated_at: now })
    .where('id', '=', id)
    .where('state', '=', 'open')
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/**
 * Moves an upload from one of `from` to `to`, atomically: of two racing callers (two
 * completeUpload calls, or one and the sweeper) only one wins. With `idleBefore`, only an
 * upload without activity since then is claimed.
 */
export async function claimUpload(
  db: HoldDatabase,
  id: string,
  from: readonly UploadState[],
  to: UploadState,
  now: number,
  idleBefore?: number,
): Promise<boolean> {
  let query = db.db
    .updateTable('hold_upload')
    .set({ state: to, updated_at: now })
    .where('id', '=', id)
    .where('state', 'in', from)
  if (idleBefore !== undefined) query = query.where('updated_at', '<', idleBefore)
  const result = await query.executeTakeFirst()
  return result.numUpdatedRows > 0n
}

/** Names the blob an upload is completing into (its digest may not have been known before). */
export async function nameUpload(db: HoldDatabase, id: string, digest: string): Promise<void> {
  await db.db.updateTable('hold_upload').set({ digest }).where('id', '=', id).execute()
}

export async function deleteUpload(db: HoldDatabase, id: string): Promise<void> {
  await db.db.deleteFrom('hold_upload').where('id', '=', id).execute()
}

/** Uploads without activity since `before`, oldest first. */
export async function listIdleUploads(
  db: HoldDatabase,
  before: number,
  limit: number,
): Promise<UploadRow[]> {
  return db.db
    .selectFrom('hold_upload')
    .selectAll()
    .where('updated_at', '<', before)
    .orderBy('updated_at')
    .limit(limit)
    .execute()
}

/**
 * Records a stored part's size (replacing an earlier part with the same number); returns
 * the size of the part it replaced, 0 for a new part.
 */
export async function recordPart(
  db: HoldDatabase,
  uploadId: string,
  partNumber: number,
  size: number,
): Promise<number> {
  return db.db.transaction().execute(async (tx) => {
    const earlier = await tx
      .selectFrom('hold_upload_part')
      .select('size')
      .where('upload_id', '=', uploadId)
      .where('part_number', '=', partNumber)
      .executeTakeFirst()
    await tx
      .insertInto('hold_upload_part')
      .values({ upload_id: uploadId, part_number: partNumber, size })
      .onConflict((oc) => oc.columns(['upload_id', 'part_number']).doUpdateSet({ size }))
      .execute()
    return earlier?.size ?? 0
  })
}

/** What an account has in uploads not yet ended (any state: their parts are still stored). */
export interface InFlight {
  uploads: number
  /** Bytes of their stored parts. */
  bytes: number
}

/**
 * The uploads of `did` and the bytes of their stored parts, leaving out one part (the one
 * about to be replaced) when named.
 */
export async function inFlightOf(
  db: HoldDatabase,
  did: string,
  except?: { uploadId: string; partNumber: number },
): Promise<InFlight> {
  const uploads = await db.db
    .selectFrom('hold_upload')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('uploader_did', '=', did)
    .executeTakeFirstOrThrow()
  let parts = db.db
    .selectFrom('hold_upload_part')
    .innerJoin('hold_upload', 'hold_upload.id', 'hold_upload_part.upload_id')
    .select((eb) => eb.fn.sum<number | null>('hold_upload_part.size').as('bytes'))
    .where('hold_upload.uploader_did', '=', did)
  if (except) {
    parts = parts.where((eb) =>
      eb.not(
        eb.and([
          eb('hold_upload_part.upload_id', '=', except.uploadId),
          eb('hold_upload_part.part_number', '=', except.partNumber),
        ]),
      ),
    )
  }
  const { bytes } = await parts.executeTakeFirstOrThrow()
  return { uploads: Number(uploads.n), bytes: Number(bytes ?? 0) }
}

/** Bytes of the listed parts of an upload, as stored. */
export async function partBytes(
  db: HoldDatabase,
  uploadId: string,
  partNumbers: readonly number[],
): Promise<number> {
  if (partNumbers.length === 0) return 0
  const { bytes } = await db.db
    .selectFrom('hold_upload_part')
    .select((eb) => eb.fn.sum<number | null>('size').as('bytes'))
    .where('upload_id', '=', uploadId)
    .where('part_number', 'in', partNumbers)
    .executeTakeFirstOrThrow()
  return Number(bytes ?? 0)
}

/** Records a blob `did` completed (its size counts against their quota until pushed). */
export async function recordCompletedBlob(
  db: HoldDatabase,
  did: string,
  digest: string,
  size: number,
  now: number,
): Promise<void> {
  await db.db
    .insertInto('hold_upload_blob')
    .values({ uploader_did: did, digest, size, completed_at: now })
    .onConflict((oc) =>
      oc.columns(['uploader_did', 'digest']).doUpdateSet({ size, completed_at: now }),
    )
    .execute()
}

/** Forgets completed blobs older than `before`; how many. */
export async function expireCompletedBlobs(db: HoldDatabase, before: number): Promise<number> {
  const result = await db.db
    .deleteFrom('hold_upload_blob')
    .where('completed_at', '<', before)
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
