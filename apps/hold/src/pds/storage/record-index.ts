import type { LexMap } from '@atproto/lex-data'
import { lexParse, lexStringify } from '@atproto/lex-json'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../../db/schema.ts'
import { putRecordBlobs } from './record-blobs.ts'

/** A record as stored in the index: its CID and its value (CIDs and bytes restored). */
export interface IndexedRecord {
  collection: string
  rkey: string
  cid: string
  value: LexMap
}

export interface ListRecordsQuery {
  collection: string
  limit: number
  /** The rkey of the last record of the previous page. */
  cursor?: string
  /** Ascending rkey order; the default is descending (newest TIDs first), as a PDS does. */
  reverse?: boolean
}

function toIndexed(row: { collection: string; rkey: string; cid: string; value: string }) {
  return {
    collection: row.collection,
    rkey: row.rkey,
    cid: row.cid,
    value: lexParse<LexMap>(row.value),
  }
}

export async function getIndexedRecord(
  db: Kysely<HoldSchema>,
  collection: string,
  rkey: string,
): Promise<IndexedRecord | null> {
  const row = await db
    .selectFrom('record')
    .select(['collection', 'rkey', 'cid', 'value'])
    .where('collection', '=', collection)
    .where('rkey', '=', rkey)
    .executeTakeFirst()
  return row ? toIndexed(row) : null
}

/** The CIDs of the given paths that exist, keyed `collection/rkey`. */
export async function getIndexedCids(
  db: Kysely<HoldSchema>,
  paths: { collection: string; rkey: string }[],
): Promise<Map<string, string>> {
  const found = new Map<string, string>()
  // One query per collection keeps the statements simple and uses the primary key.
  const byCollection = new Map<string, string[]>()
  for (const { collection, rkey } of paths) {
    const rkeys = byCollection.get(collection) ?? []
    rkeys.push(rkey)
    byCollection.set(collection, rkeys)
  }
  for (const [collection, rkeys] of byCollection) {
    for (let i = 0; i < rkeys.length; i += 500) {
      const rows = await db
        .selectFrom('record')
        .select(['rkey', 'cid'])
        .where('collection', '=', collection)
        .where('rkey', 'in', rkeys.slice(i, i + 500))
        .execute()
      for (const row of rows) found.set(`${collection}/${row.rkey}`, row.cid)
    }
  }
  return found
}

export async function listIndexedRecords(
  db: Kysely<HoldSchema>,
  query: ListRecordsQuery,
): Promise<IndexedRecord[]> {
  let qb = db
    .selectFrom('record')
    .select(['collection', 'rkey', 'cid', 'value'])
    .where('collection', '=', query.collection)
    .orderBy('rkey', query.reverse ? 'asc' : 'desc')
    .limit(query.limit)
  if (query.cursor !== undefined) {
    qb = qb.where('rkey', query.reverse ? '>' : '<', query.cursor)
  }
  return (await qb.execute()).map(toIndexed)
}

export async function listIndexedCollections(db: Kysely<HoldSchema>): Promise<string[]> {
  const rows = await db
    .selectFrom('record')
    .select('collection')
    .distinct()
    .orderBy('collection')
    .execute()
  return rows.map((r) => r.collection)
}

/** Of the given CIDs, those a current record points at (ask after updating the index). */
export async function cidsStillReferenced(
  db: Kysely<HoldSchema>,
  cids: string[],
): Promise<Set<string>> {
  const found = new Set<string>()
  for (let i = 0; i < cids.length; i += 500) {
    const rows = await db
      .selectFrom('record')
      .select('cid')
      .distinct()
      .where('cid', 'in', cids.slice(i, i + 500))
      .execute()
    for (const row of rows) found.add(row.cid)
  }
  return found
}

export async function putIndexedRecord(
  db: Kysely<HoldSchema>,
  record: { collection: string; rkey: string; cid: string; value: LexMap },
  rev: string,
): Promise<void> {
  const now = new Date().toISOString()
  const value = lexStringify(record.value)
  await db
    .insertInto('record')
    .values({
      collection: record.collection,
      rkey: record.rkey,
      cid: record.cid,
      value,
      repo_rev: rev,
      indexed_at: now,
    })
    .onConflict((oc) =>
      oc
        .columns(['collection', 'rkey'])
        .doUpdateSet({ cid: record.cid, value, repo_rev: rev, indexed_at: now }),
    )
    .execute()
  await putRecordBlobs(db, record.collection, record.rkey, record.value)
}

export async function deleteIndexedRecord(
  db: Kysely<HoldSchema>,
  collection: string,
  rkey: string,
): Promise<void> {
  await db
    .deleteFrom('record')
    .where('collection', '=', collection)
    .where('rkey', '=', rkey)
    .execute()
  await putRecordBlobs(db, collection, rkey, null)
}
