// Which blobs each record names, kept beside the record index (`record_blob`), for
// com.atproto.sync.listBlobs: atproto blob references anywhere in a record, and the OCI
// blob of a layer record (its digest as a raw CID).
import { NSID } from '@atcr/core/lexicons'
import { enumBlobRefs, getBlobCidString, type LexMap } from '@atproto/lex-data'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../../db/schema.ts'
import { cidOfDigest } from './blob-cid.ts'

/** The CIDs of the blobs a record names, without repeats. */
export function blobCidsOf(collection: string, value: LexMap): string[] {
  const cids = new Set<string>()
  for (const ref of enumBlobRefs(value)) cids.add(getBlobCidString(ref))
  if (collection === NSID.holdLayer && typeof value.digest === 'string') {
    const cid = cidOfDigest(value.digest)
    if (cid) cids.add(cid.toString())
  }
  return [...cids]
}

/** Replaces the blobs recorded for a record path (none when `value` is null: a delete). */
export async function putRecordBlobs(
  db: Kysely<HoldSchema>,
  collection: string,
  rkey: string,
  value: LexMap | null,
): Promise<void> {
  await db
    .deleteFrom('record_blob')
    .where('collection', '=', collection)
    .where('rkey', '=', rkey)
    .execute()
  const cids = value ? blobCidsOf(collection, value) : []
  if (cids.length === 0) return
  await db
    .insertInto('record_blob')
    .values(cids.map((blob_cid) => ({ blob_cid, collection, rkey })))
    .execute()
}

export interface ListBlobsQuery {
  limit: number
  /** The last CID of the previous page. */
  cursor?: string
  /** Only blobs of records written after this rev. */
  since?: string
}

/** Blob CIDs in CID order, each once, as the reference PDS lists them. */
export async function listRecordBlobs(
  db: Kysely<HoldSchema>,
  query: ListBlobsQuery,
): Promise<string[]> {
  let qb = db
    .selectFrom('record_blob')
    .select('record_blob.blob_cid')
    .groupBy('record_blob.blob_cid')
    .orderBy('record_blob.blob_cid', 'asc')
    .limit(query.limit)
  if (query.since !== undefined) {
    qb = qb
      .innerJoin('record', (join) =>
        join
          .onRef('record.collection', '=', 'record_blob.collection')
          .onRef('record.rkey', '=', 'record_blob.rkey'),
      )
      .where('record.repo_rev', '>', query.since)
  }
  if (query.cursor !== undefined) qb = qb.where('record_blob.blob_cid', '>', query.cursor)
  return (await qb.execute()).map((row) => row.blob_cid)
}
