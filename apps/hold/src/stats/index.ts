// Pull and push counters: one io.atcr.hold.stats record per (owner, repository), at the
// deterministic key statsRkey(ownerDid, repository). Callers hold the record lock across
// the read and the write (see record-lock.ts), so no increment is lost.
import { NSID, type StatsRecord, statsRkey, validateRecord } from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import { lexParse } from '@atproto/lex-json'
import { type Kysely, sql } from 'kysely'
import type { HoldContext } from '../context.ts'
import type { HoldSchema } from '../db/schema.ts'
import type { RecordWrite } from '../pds/index.ts'

/** A stats record of the hold's repo. */
export interface StatsEntry {
  uri: string
  rkey: string
  cid: string
  value: StatsRecord
}

/** A change to a repository's counters; absent fields keep their value. */
export interface StatsChange {
  pullCount?: number
  pushCount?: number
  lastPull?: string
  lastPush?: string
}

// Spelled as in migration 004, so that SQLite uses its index.
const OWNER_DID = sql<string>`json_extract(value, '$.ownerDid')`

/** The stats record of one repository, or null. */
export async function getStats(
  ctx: Pick<HoldContext, 'repo'>,
  ownerDid: string,
  repository: string,
): Promise<StatsEntry | null> {
  const record = await ctx.repo.reader.getRecord(NSID.holdStats, statsRkey(ownerDid, repository))
  return record ? { ...record, value: record.value as unknown as StatsRecord } : null
}

/** Every stats record of repositories owned by `ownerDid`. */
export async function statsOfOwner(
  db: Kysely<HoldSchema>,
  holdDid: string,
  ownerDid: string,
): Promise<StatsEntry[]> {
  const rows = await db
    .selectFrom('record')
    .select(['rkey', 'cid', 'value'])
    .where('collection', '=', NSID.holdStats)
    .where(OWNER_DID, '=', ownerDid)
    .orderBy('rkey')
    .execute()
  return rows.map((row) => ({
    uri: `at://${holdDid}/${NSID.holdStats}/${row.rkey}`,
    rkey: row.rkey,
    cid: row.cid,
    value: lexParse<LexMap>(row.value) as unknown as StatsRecord,
  }))
}

/**
 * The write that applies `change` to the repository's stats record (`current`, null when
 * there is none yet: counters start at 0), stamped `now`.
 */
export function statsWrite(
  ownerDid: string,
  repository: string,
  current: StatsEntry | null,
  change: StatsChange,
  now: string,
): RecordWrite {
  const previous = current?.value
  const record = validateRecord(NSID.holdStats, {
    $type: NSID.holdStats,
    ownerDid,
    repository,
    pullCount: change.pullCount ?? storedCount(previous?.pullCount),
    pushCount: change.pushCount ?? storedCount(previous?.pushCount),
    updatedAt: now,
    ...optional('lastPull', change.lastPull ?? previous?.lastPull),
    ...optional('lastPush', change.lastPush ?? previous?.lastPush),
  })
  const rkey = current?.rkey ?? statsRkey(ownerDid, repository)
  const action = current ? 'update' : 'create'
  return { action, collection: NSID.holdStats, rkey, record: record as unknown as LexMap }
}

/** The change that counts one more push (`operation` push) or pull at `now`. */
export function countOne(current: StatsEntry | null, operation: 'push' | 'pull', now: string) {
  const value = current?.value
  return operation === 'push'
    ? { pushCount: storedCount(value?.pushCount) + 1, lastPush: now }
    : { pullCount: storedCount(value?.pullCount) + 1, lastPull: now }
}

/** A stored counter; anything unusable (another implementation's record) counts as 0. */
export function storedCount(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0
}

function optional(key: string, value: string | undefined): Record<string, string> {
  return value === undefined ? {} : { [key]: value }
}
