// The admin overview's reads of the hold's database: storage per user and in all (each
// digest counted once, from the layer records, as quotas count it), crew size, push and
// pull counters of every repository, and uploads still open.
import { NSID, type StatsRecord } from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import { lexParse } from '@atproto/lex-json'
import { type Kysely, sql } from 'kysely'
import type { HoldSchema } from '../db/schema.ts'

type Db = Kysely<HoldSchema>

// Spelled as in migration 004, so that SQLite uses its indexes.
const USER_DID = sql<string>`json_extract(value, '$.userDid')`
const DIGEST = sql<string>`json_extract(value, '$.digest')`
const SIZE = sql<number>`json_extract(value, '$.size')`
const PUSHES = sql<number>`json_extract(value, '$.pushCount')`
const PULLS = sql<number>`json_extract(value, '$.pullCount')`

export interface UserUsage {
  did: string
  uniqueBlobs: number
  totalSize: number
}

/** Every pusher's storage, largest first. */
export async function usageByUser(db: Db): Promise<UserUsage[]> {
  const perDigest = db
    .selectFrom('record')
    .select([USER_DID.as('did'), DIGEST.as('digest'), sql<number>`max(${SIZE})`.as('size')])
    .where('collection', '=', NSID.holdLayer)
    .groupBy([USER_DID, DIGEST])
  const rows = await db
    .selectFrom(perDigest.as('d'))
    .select([
      'd.did',
      sql<number>`count(*)`.as('uniqueBlobs'),
      sql<number>`coalesce(sum(d.size), 0)`.as('totalSize'),
    ])
    .where('d.did', 'is not', null)
    .groupBy('d.did')
    .orderBy('totalSize', 'desc')
    .execute()
  return rows.map((row) => ({
    did: row.did,
    uniqueBlobs: Number(row.uniqueBlobs),
    totalSize: Number(row.totalSize),
  }))
}

/** The distinct blobs all layer records name, and their bytes (each digest once). */
export async function referencedStorage(db: Db): Promise<{ blobs: number; bytes: number }> {
  const perDigest = db
    .selectFrom('record')
    .select([DIGEST.as('digest'), sql<number>`max(${SIZE})`.as('size')])
    .where('collection', '=', NSID.holdLayer)
    .groupBy(DIGEST)
  const row = await db
    .selectFrom(perDigest.as('d'))
    .select([sql<number>`count(*)`.as('blobs'), sql<number>`coalesce(sum(d.size), 0)`.as('bytes')])
    .executeTakeFirstOrThrow()
  return { blobs: Number(row.blobs), bytes: Number(row.bytes) }
}

/** Every crew member's quota tier name (null: none named, the default tier applies). */
export async function crewTiers(db: Db): Promise<Map<string, string | null>> {
  const rows = await db
    .selectFrom('record')
    .select([
      sql<string | null>`json_extract(value, '$.member')`.as('member'),
      sql<unknown>`json_extract(value, '$.tier')`.as('tier'),
    ])
    .where('collection', '=', NSID.holdCrew)
    .execute()
  const tiers = new Map<string, string | null>()
  for (const { member, tier } of rows) {
    if (typeof member === 'string') tiers.set(member, typeof tier === 'string' ? tier : null)
  }
  return tiers
}

export async function crewCount(db: Db): Promise<number> {
  const row = await db
    .selectFrom('record')
    .select(sql<number>`count(*)`.as('n'))
    .where('collection', '=', NSID.holdCrew)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Stats records, busiest repositories first (pushes plus pulls), at most `limit`. */
export async function busiestRepositories(db: Db, limit: number): Promise<StatsRecord[]> {
  const rows = await db
    .selectFrom('record')
    .select('value')
    .where('collection', '=', NSID.holdStats)
    .orderBy(sql`coalesce(${PUSHES}, 0) + coalesce(${PULLS}, 0)`, 'desc')
    .limit(limit)
    .execute()
  return rows.map((row) => lexParse<LexMap>(row.value) as unknown as StatsRecord)
}

/** Uploads still open, and the bytes of the parts they have stored so far. */
export async function openUploads(db: Db): Promise<{ count: number; bytes: number }> {
  const [uploads, parts] = await Promise.all([
    db.selectFrom('hold_upload').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow(),
    db
      .selectFrom('hold_upload_part')
      .select(sql<number>`coalesce(sum(size), 0)`.as('bytes'))
      .executeTakeFirstOrThrow(),
  ])
  return { count: Number(uploads.n), bytes: Number(parts.bytes) }
}
