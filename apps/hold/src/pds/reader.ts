import type { Cid, LexMap } from '@atproto/lex-data'
import { blocksToCarFile, concatBytesAsync, getRecords, writeCarStream } from '@atproto/repo'
import type { HoldDatabase } from '../db/index.ts'
import { RepoNotFoundError } from './errors.ts'
import { type ListBlobsQuery, listRecordBlobs } from './storage/record-blobs.ts'
import {
  getIndexedRecord,
  type IndexedRecord,
  type ListRecordsQuery,
  listIndexedCollections,
  listIndexedRecords,
} from './storage/record-index.ts'
import { RepoSnapshot } from './storage/snapshot.ts'
import { SqlRepoStorage } from './storage/sql-repo-storage.ts'

export type { ListBlobsQuery } from './storage/record-blobs.ts'
export type { ListRecordsQuery } from './storage/record-index.ts'

/** A record with its AT-URI; `value` keeps CIDs and bytes as objects (lex form). */
export interface RepoRecord {
  uri: string
  collection: string
  rkey: string
  cid: string
  value: LexMap
}

export interface RepoHeadInfo {
  cid: string
  rev: string
}

/**
 * A CAR export being read from a snapshot. Iterate it once; it closes the snapshot when
 * done, on error, or when iteration stops early. `close()` is safe to call any time.
 */
export interface CarExport extends AsyncIterableIterator<Uint8Array> {
  root: string
  rev: string
  close(): void
}

/** Reads of the hold's repo: records from the index, CARs from consistent snapshots. */
export class RepoReader {
  readonly did: string
  private readonly database: HoldDatabase

  constructor(database: HoldDatabase, did: string) {
    this.database = database
    this.did = did
  }

  async getHead(): Promise<RepoHeadInfo | null> {
    const head = await new SqlRepoStorage(this.database.db, this.did).getHead()
    return head ? { cid: head.cid.toString(), rev: head.rev } : null
  }

  async getRecord(collection: string, rkey: string): Promise<RepoRecord | null> {
    const record = await getIndexedRecord(this.database.db, collection, rkey)
    return record ? this.withUri(record) : null
  }

  async listRecords(query: ListRecordsQuery): Promise<RepoRecord[]> {
    const records = await listIndexedRecords(this.database.db, query)
    return records.map((r) => this.withUri(r))
  }

  async listCollections(): Promise<string[]> {
    return listIndexedCollections(this.database.db)
  }

  /** The CIDs of the blobs the records name, in CID order. */
  async listBlobs(query: ListBlobsQuery): Promise<string[]> {
    return listRecordBlobs(this.database.db, query)
  }

  /** The given blocks of the repo as a CAR without a root, and the CIDs it lacks. */
  async blocksCar(cids: Cid[]): Promise<{ car: Uint8Array; missing: string[] }> {
    const storage = new SqlRepoStorage(this.database.db, this.did)
    const { blocks, missing } = await storage.getBlocks(cids)
    if (missing.length > 0) return { car: new Uint8Array(0), missing: missing.map(String) }
    return { car: await blocksToCarFile(null, blocks), missing: [] }
  }

  /**
   * The whole repo as a CAR (root = head commit), or with `since` only the blocks added
   * after that rev. Throws RepoNotFoundError before the repo is initialized.
   */
  exportCar(opts: { since?: string } = {}): CarExport {
    const snapshot = RepoSnapshot.open(this.database.path, this.did)
    const head = snapshot.head()
    if (!head) {
      snapshot.close()
      throw new RepoNotFoundError(this.did)
    }
    const chunks = writeCarStream(head.cid, snapshot.blocks(opts.since))
    return closingIterator(chunks[Symbol.asyncIterator](), () => snapshot.close(), {
      root: head.cid.toString(),
      rev: head.rev,
    })
  }

  /**
   * A CAR proving a record at the current head: the commit, the MST path to the key and
   * the record (or, for a missing record, the path proving its absence).
   */
  async recordProofCar(collection: string, rkey: string): Promise<Uint8Array> {
    const snapshot = RepoSnapshot.open(this.database.path, this.did)
    try {
      const head = snapshot.head()
      if (!head) throw new RepoNotFoundError(this.did)
      return await concatBytesAsync(getRecords(snapshot, head.cid, [{ collection, rkey }]))
    } finally {
      snapshot.close()
    }
  }

  private withUri(record: IndexedRecord): RepoRecord {
    return { uri: `at://${this.did}/${record.collection}/${record.rkey}`, ...record }
  }
}

function closingIterator(
  inner: AsyncIterator<Uint8Array>,
  close: () => void,
  head: { root: string; rev: string },
): CarExport {
  let closed = false
  const finish = () => {
    if (closed) return
    closed = true
    close()
  }
  return {
    ...head,
    [Symbol.asyncIterator]() {
      return this
    },
    async next() {
      if (closed) return { done: true, value: undefined }
      try {
        const result = await inner.next()
        if (result.done) finish()
        return result
      } catch (err) {
        finish()
        throw err
      }
    },
    async return() {
      if (!closed) {
        try {
          await inner.return?.()
        } finally {
          finish()
        }
      }
      return { done: true, value: undefined }
    },
    close: finish,
  }
}
