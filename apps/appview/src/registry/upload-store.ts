// The registry_upload and registry_upload_part tables: upload sessions, their leases and
// the parts the hold has stored. Every write made by a request names its lease, so a
// request that lost its lease (its process stalled past the lease) records nothing.
import { type Kysely, sql, type Updateable } from 'kysely'
import type { AppViewDatabase } from '../db/index.ts'
import type { AppViewSchema, RegistryUploadPartTable, RegistryUploadTable } from '../db/schema.ts'

export type UploadRow = RegistryUploadTable
export type UploadPart = Pick<RegistryUploadPartTable, 'part_number' | 'etag' | 'size'>

/** What acquiring a lease found: the session (now leased), or why not. */
export type LeaseResult =
  | { state: 'leased'; row: UploadRow }
  | { state: 'busy'; row: UploadRow }
  | { state: 'expired' }
  | { state: 'unknown' }

/** Updates a session only while `owner` holds its lease; false when the lease was lost. */
async function updateLeased(
  db: Kysely<AppViewSchema>,
  id: string,
  owner: string,
  values: Updateable<RegistryUploadTable>,
): Promise<boolean> {
  const result = await db
    .updateTable('registry_upload')
    .set(values)
    .where('id', '=', id)
    .where('lease_owner', '=', owner)
    .executeTakeFirst()
  return result.numUpdatedRows > 0n
}

// The first key of the upload cap's advisory locks (PostgreSQL): its own lock space.
const ACCOUNT_LOCK = 0x41544352

export class UploadStore {
  readonly #db: AppViewDatabase

  constructor(db: AppViewDatabase) {
    this.#db = db
  }

  /**
   * Inserts a session unless its account already has `cap` live ones (idle since before
   * `idleBefore` and unleased: expired, not counted). The count and the insert are one
   * step for every process sharing the database: one statement on SQLite (writes are
   * serialized), and on PostgreSQL a transaction holding the account's advisory lock,
   * since two READ COMMITTED statements opening at once would both pass the count.
   */
  async insert(row: UploadRow, cap: number, idleBefore: number): Promise<boolean> {
    const insert = sql`
      INSERT INTO registry_upload (id, name, caller_did, hold_did, hold_endpoint,
        hold_upload_id, expected_digest, received, sent, lease_owner, lease_until,
        created_at, updated_at)
      SELECT ${row.id}, ${row.name}, ${row.caller_did}, ${row.hold_did}, ${row.hold_endpoint},
        ${row.hold_upload_id}, ${row.expected_digest}, ${row.received}, ${row.sent},
        ${row.lease_owner}, ${row.lease_until}, ${row.created_at}, ${row.updated_at}
      WHERE (SELECT COUNT(*) FROM registry_upload
             WHERE caller_did = ${row.caller_did}
               AND (updated_at >= ${idleBefore} OR lease_until >= ${row.created_at})) < ${cap}
    `
    if (this.#db.engine === 'sqlite') {
      const result = await insert.execute(this.#db.db)
      return (result.numAffectedRows ?? 0n) > 0n
    }
    return this.#db.db.transaction().execute(async (trx) => {
      // Held until the transaction ends; other accounts are not held up (but for the
      // rare accounts whose 32-bit name hashes collide).
      await sql`SELECT pg_advisory_xact_lock(${ACCOUNT_LOCK}, hashtext(${row.caller_did}))`.execute(
        trx,
      )
      const result = await insert.execute(trx)
      return (result.numAffectedRows ?? 0n) > 0n
    })
  }

  async get(id: string): Promise<UploadRow | null> {
    const row = await this.#db.db
      .selectFrom('registry_upload')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst()
    return row ?? null
  }

  /**
   * Leases a session to `owner` until `until`, unless another request holds it, or it has
   * been idle since before `idleBefore` (expired: the caller ends it).
   */
  async lease(
    id: string,
    owner: string,
    now: number,
    until: number,
    idleBefore: number,
  ): Promise<LeaseResult> {
    const result = await this.#db.db
      .updateTable('registry_upload')
      .set({ lease_owner: owner, lease_until: until, updated_at: now })
      .where('id', '=', id)
      .where('lease_until', '<', now)
      .where('updated_at', '>=', idleBefore)
      .executeTakeFirst()
    const row = await this.get(id)
    if (!row) return { state: 'unknown' }
    if (result.numUpdatedRows > 0n && row.lease_owner === owner) return { state: 'leased', row }
    if (row.lease_until >= now) return { state: 'busy', row }
    return { state: 'expired' }
  }

  /** Leases an idle session for ending it (the sweeper); false when it is not idle or busy. */
  async claimIdle(
    id: string,
    owner: string,
    now: number,
    until: number,
    idleBefore: number,
  ): Promise<UploadRow | null> {
    const result = await this.#db.db
      .updateTable('registry_upload')
      .set({ lease_owner: owner, lease_until: until })
      .where('id', '=', id)
      .where('lease_until', '<', now)
      .where('updated_at', '<', idleBefore)
      .executeTakeFirst()
    if (result.numUpdatedRows === 0n) return null
    const row = await this.get(id)
    return row?.lease_owner === owner ? row : null
  }

  /** Extends a lease (and the session's activity); false when it was lost. */
  async renew(id: string, owner: string, now: number, until: number): Promise<boolean> {
    return updateLeased(this.#db.db, id, owner, { lease_until: until, updated_at: now })
  }

  /** Records progress made under a lease; false when the lease was lost. */
  async record(
    id: string,
    owner: string,
    values: Partial<Pick<UploadRow, 'received' | 'sent' | 'hold_upload_id' | 'updated_at'>>,
  ): Promise<boolean> {
    return updateLeased(this.#db.db, id, owner, values)
  }

  /** Records a part the hold stored, with the session's new totals, in one transaction. */
  async addPart(
    id: string,
    owner: string,
    part: UploadPart,
    totals: { received: number; sent: number },
  ): Promise<boolean> {
    return this.#db.db.transaction().execute(async (trx) => {
      if (!(await updateLeased(trx, id, owner, totals))) return false
      await trx
        .insertInto('registry_upload_part')
        .values({ upload_id: id, ...part })
        .onConflict((c) =>
          c.columns(['upload_id', 'part_number']).doUpdateSet({ etag: part.etag, size: part.size }),
        )
        .execute()
      return true
    })
  }

  async parts(id: string): Promise<UploadPart[]> {
    return this.#db.db
      .selectFrom('registry_upload_part')
      .select(['part_number', 'etag', 'size'])
      .where('upload_id', '=', id)
      .orderBy('part_number')
      .execute()
  }

  /** Gives up a lease, recording the session's activity. */
  async release(id: string, owner: string, now: number): Promise<void> {
    await updateLeased(this.#db.db, id, owner, {
      lease_owner: null,
      lease_until: 0,
      updated_at: now,
    })
  }

  async delete(id: string): Promise<void> {
    await this.#db.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('registry_upload_part').where('upload_id', '=', id).execute()
      await trx.deleteFrom('registry_upload').where('id', '=', id).execute()
    })
  }

  /** Sessions idle since before `idleBefore` and not leased, oldest first. */
  async idle(idleBefore: number, now: number, limit: number): Promise<string[]> {
    const rows = await this.#db.db
      .selectFrom('registry_upload')
      .select('id')
      .where('updated_at', '<', idleBefore)
      .where('lease_until', '<', now)
      .orderBy('updated_at')
      .limit(limit)
      .execute()
    return rows.map((row) => row.id)
  }

  /** Sessions not expired (active since `idleBefore`, or leased), of every instance. */
  async countLive(idleBefore: number, now: number): Promise<number> {
    const row = await this.#db.db
      .selectFrom('registry_upload')
      .select((eb) => eb.fn.countAll<number | string>().as('count'))
      .where((eb) => eb.or([eb('updated_at', '>=', idleBefore), eb('lease_until', '>=', now)]))
      .executeTakeFirstOrThrow()
    return Number(row.count)
  }

  /** Which of `ids` are sessions. */
  async existing(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set()
    const rows = await this.#db.db
      .selectFrom('registry_upload')
      .select('id')
      .where('id', 'in', ids)
      .execute()
    return new Set(rows.map((row) => row.id))
  }
}
