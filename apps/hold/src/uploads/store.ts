// The hold_upload table: one row per multipart upload in progress.
import type { HoldDatabase } from '../db/index.ts'
import type { HoldUploadTable } from '../db/schema.ts'

export type UploadRow = HoldUploadTable
export type UploadState = HoldUploadTable['state']

export async function insertUpload(db: HoldDatabase, row: UploadRow): Promise<void> {
  await db.db.insertInto('hold_upload').values(row).execute()
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
