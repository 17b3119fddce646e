// Queries over the hold's io.atcr.hold.layer records: whose layers, which manifest's, how
// many bytes per user, and which digests are referenced at all. They read the repo's
// record index directly (JSON fields indexed by migration 004), because the repo reader
// only lists a whole collection page by page, and quota checks, exports and GC would
// otherwise read every layer record of the hold each time.
import { type LayerRecord, NSID } from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import { lexParse } from '@atproto/lex-json'
import { type Kysely, sql } from 'kysely'
import type { HoldSchema } from '../db/schema.ts'

/** A layer record of the hold's repo. */
export interface LayerEntry {
  uri: string
  rkey: string
  cid: string
  value: LayerRecord
}

/** What a user stores, each digest counted once. */
export interface LayerUsage {
  uniqueBlobs: number
  totalSize: number
  /** Size of every digest the user's layer records name (the largest, if they disagree). */
  sizes: Map<string, number>
}

type Db = Kysely<HoldSchema>

// These expressions must read exactly as in migration 004 for SQLite to use its indexes.
const USER_DID = sql<string>`json_extract(value, '$.userDid')`
const MANIFEST = sql<string>`json_extract(value, '$.manifest')`
const DIGEST = sql<string>`json_extract(value, '$.digest')`
const SIZE = sql<number>`json_extract(value, '$.size')`

function toEntry(holdDid: string, row: { rkey: string; cid: string; value: string }): LayerEntry {
  return {
    uri: `at://${holdDid}/${NSID.holdLayer}/${row.rkey}`,
    rkey: row.rkey,
    cid: row.cid,
    value: lexParse<LexMap>(row.value) as unknown as LayerRecord,
  }
}

function layerRows(db: Db) {
  return db
    .selectFrom('record')
    .select(['rkey', 'cid', 'value'])
    .where('collection', '=', NSID.holdLayer)
}

/**
 * Bytes of the blobs `userDid` completed (hold_upload_blob) that no layer record of theirs
 * names yet: what their quota counts beyond their layers until they push.
 */
export async function unpushedBytesOf(db: Db, userDid: string): Promise<number> {
  const row = await db
    .selectFrom('hold_upload_blob as b')
    .select(sql<number | null>`sum(b.size)`.as('bytes'))
    .where('b.uploader_did', '=', userDid)
    .where(({ not, exists }) =>
      not(
        exists(
          db
            .selectFrom('record')
            .select(sql`1`.as('one'))
            .where('collection', '=', NSID.holdLayer)
            .where(USER_DID, '=', userDid)
            .where(DIGEST, '=', sql.ref<string>('b.digest')),
        ),
      ),
    )
    .executeTakeFirstOrThrow()
  return Number(row.bytes ?? 0)
}

/** Every layer record naming `userDid` as the pusher, oldest first. */
export async function layersOfUser(db: Db, holdDid: string, userDid: string) {
  const rows = await layerRows(db).where(USER_DID, '=', userDid).orderBy('rkey').execute()
  return rows.map((row) => toEntry(holdDid, row))
}

/** Every layer record written for the manifest at `manifestUri`, oldest first. */
export async function layersOfManifest(db: Db, holdDid: string, manifestUri: string) {
  const rows = await layerRows(db).where(MANIFEST, '=', manifestUri).orderBy('rkey').execute()
  return rows.map((row) => toEntry(holdDid, row))
}

/** The user's storage: distinct digests over their layer records, each size counted once. */
export async function usageOf(db: Db, userDid: string): Promise<LayerUsage> {
  const rows = await db
    .selectFrom('record')
    .select([DIGEST.as('digest'), sql<number>`max(${SIZE})`.as('size')])
    .where('collection', '=', NSID.holdLayer)
    .where(USER_DID, '=', userDid)
    .groupBy(DIGEST)
    .execute()
  const sizes = new Map<string, number>()
  let totalSize = 0
  for (const row of rows) {
    if (typeof row.digest !== 'string') continue
    const size = Number.isSafeInteger(row.size) && row.size > 0 ? row.size : 0
    sizes.set(row.digest, size)
    totalSize += size
  }
  return { uniqueBlobs: sizes.size, totalSize, sizes }
}

/** Every digest any layer record names: the blobs garbage collection must keep. */
export async function referencedDigests(db: Db): Promise<Set<string>> {
  const rows = await db
    .selectFrom('record')
    .select(DIGEST.as('digest'))
    .distinct()
    .where('collection', '=', NSID.holdLayer)
    .execute()
  const digests = new Set<string>()
  for (const row of rows) if (typeof row.digest === 'string') digests.add(row.digest)
  return digests
}

/** Whether any layer record names `digest` (a last check before a blob is deleted). */
export async function isDigestReferenced(db: Db, digest: string): Promise<boolean> {
  const row = await db
    .selectFrom('record')
    .select('rkey')
    .where('collection', '=', NSID.holdLayer)
    .where(DIGEST, '=', digest)
    .limit(1)
    .executeTakeFirst()
  return row !== undefined
}
