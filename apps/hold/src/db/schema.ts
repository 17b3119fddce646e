import type { OAuthTables } from '@atcr/core/oauth'
import type { Generated } from 'kysely'

/**
 * The hold's SQLite schema, one interface per table. A migration that adds a table adds
 * its interface here and a key to {@link HoldSchema}.
 */

/** The repo's current head: one row, for the hold's own DID. */
export interface RepoRootTable {
  did: string
  cid: string
  rev: string
  indexed_at: string
}

/** Every block of the current repo (commits, MST nodes, records), with the rev that added it. */
export interface RepoBlockTable {
  cid: string
  repo_rev: string
  size: number
  content: Uint8Array
}

/** The current records, for getRecord/listRecords; `value` is the record in JSON form. */
export interface RecordTable {
  collection: string
  rkey: string
  cid: string
  value: string
  repo_rev: string
  indexed_at: string
}

/** The blobs a record names (atproto blob refs, a layer's digest as a raw CID). */
export interface RecordBlobTable {
  blob_cid: string
  collection: string
  rkey: string
}

/** The firehose: one encoded `subscribeRepos` frame per event, in sequence order. */
export interface RepoSeqTable {
  seq: Generated<number>
  event_type: string
  frame: Uint8Array
  sequenced_at: string
}

/** The hold's DID document as last announced with an #identity event (JSON). */
export interface IdentityAnnouncedTable {
  did: string
  document: string
  announced_at: string
}

/** Ordinary atproto blobs (e.g. a profile avatar), by CID. */
export interface BlobTable {
  cid: string
  mime_type: string
  size: number
  content: Uint8Array
  created_at: string
}

/** A multipart blob upload in progress (see `uploads/`); times are Unix milliseconds. */
export interface HoldUploadTable {
  id: string
  /**
   * The digest declared at initiateUpload, null when the uploader did not know it yet
   * (completeUpload's digest is the one checked, in every case).
   */
  digest: string | null
  uploader_did: string
  /** The storage driver's multipart id: never shown to clients. */
  driver_upload_id: string
  state: 'open' | 'completing' | 'aborting'
  created_at: number
  /** Last activity (a part, a part URL); the sweeper removes uploads idle past the expiry. */
  updated_at: number
}

/** One stored part of an upload in progress: its size counts against the uploader's limits. */
export interface HoldUploadPartTable {
  upload_id: string
  part_number: number
  size: number
}

/** A crew request waiting for an admin's approval (see crew/requests.ts). */
export interface CrewRequestTable {
  did: string
  role: string
  /** JSON array of the permissions asked for. */
  permissions: string
  requested_at: number
}

/** A completed upload no push of its uploader names yet (counted against their quota). */
export interface HoldUploadBlobTable {
  uploader_did: string
  digest: string
  size: number
  /** Unix milliseconds; rows older than gc.grace_period are dropped. */
  completed_at: number
}

/** The admin pages' OAuth sign-in and browser sessions are @atcr/core/oauth's tables. */
export interface HoldSchema extends OAuthTables {
  repo_root: RepoRootTable
  repo_block: RepoBlockTable
  record: RecordTable
  record_blob: RecordBlobTable
  repo_seq: RepoSeqTable
  blob: BlobTable
  identity_announced: IdentityAnnouncedTable
  hold_upload: HoldUploadTable
  hold_upload_part: HoldUploadPartTable
  crew_request: CrewRequestTable
  hold_upload_blob: HoldUploadBlobTable
}
