// The AppView database's tables, one interface each; each feature's migration creates its
// own and adds them here.
import type { OAuthSessionTable, OAuthStateTable, WebSessionTable } from '@atcr/core/oauth'

/**
 * A user's PDS session from their last token exchange (`com.atproto.server.createSession`),
 * kept sealed: `sealed` is AES-256-GCM over the session JSON (tokens, handle, PDS endpoint).
 */
export interface PdsSessionTable {
  did: string
  /** Changes on every new login, so a stale in-memory agent cannot overwrite a newer session. */
  session_id: string
  sealed: Uint8Array
  /** When the user's io.atcr.sailor.profile was last found or created; null: not yet. */
  profile_checked_at: string | null
  created_at: string
  updated_at: string
}

/** A repository pushed through this AppView (`/v2/_catalog` lists those holding a manifest). */
export interface RegistryRepositoryTable {
  did: string
  repository: string
  /** `<handle>/repository` (else `did-plc-.../repository`), the name `/v2/_catalog` lists. */
  name: string
  created_at: string
  updated_at: string
}

/** A sha512 blob stored on a hold under its sha256 digest (the hold API takes only sha256). */
export interface RegistryBlobAliasTable {
  hold_did: string
  digest: string
  stored_digest: string
  created_at: string
}

/**
 * A manifest's link into one repository (see migrations/003): linked = 1 while the
 * repository holds it, 0 once deleted there.
 */
export interface RepositoryManifestTable {
  did: string
  repository: string
  digest: string
  linked: number
  record_digest: string | null
  subject: string | null
  updated_at: string
}

/** A blob's link into one repository: linked = 1 while the repository holds it. */
export interface RepositoryBlobTable {
  did: string
  repository: string
  digest: string
  linked: number
  hold_did: string | null
  updated_at: string
}

/** A blob upload session (see migrations/004); times are Unix milliseconds. */
export interface RegistryUploadTable {
  id: string
  name: string
  caller_did: string
  hold_did: string
  hold_endpoint: string
  hold_upload_id: string | null
  expected_digest: string | null
  received: number
  sent: number
  lease_owner: string | null
  lease_until: number
  created_at: number
  updated_at: number
}

/** A part of an upload session that the hold has stored. */
export interface RegistryUploadPartTable {
  upload_id: string
  part_number: number
  etag: string
  size: number
}

/** A device authorization (RFC 8628) in progress or just decided. */
export interface DeviceAuthorizationTable {
  device_code_hash: string
  user_code: string
  client_name: string
  status: 'pending' | 'approved' | 'denied' | 'issued'
  did: string | null
  handle: string | null
  last_poll_at: number
  created_at: number
  expires_at: number
}

/** An approved device: its secret is stored as a SHA-256 only. */
export interface DeviceTable {
  id: string
  did: string
  name: string
  secret_hash: string
  created_at: number
  last_used_at: number | null
}

/** The last health check of a hold (see migrations/006); times are Unix milliseconds. */
export interface HoldHealthTable {
  hold_did: string
  endpoint: string
  status: 'unknown' | 'up' | 'down'
  latency_ms: number | null
  error: string | null
  checked_at: number
  changed_at: number
}

/**
 * The network index (see migrations/007 and ingest/): what the AppView knows of every
 * account's io.atcr.* records. Times are Unix milliseconds; `created_at` and `last_*` are
 * the records' own ISO strings. Written only through ingest/apply.ts.
 */
export interface IndexAccountTable {
  did: string
  handle: string | null
  pds_endpoint: string | null
  display_name: string | null
  avatar_url: string | null
  /** From io.atcr.sailor.profile. */
  default_hold: string | null
  auto_remove_untagged: number
  oci_client: string | null
  backfilled_at: number | null
  indexed_at: number
}

export interface IndexManifestTable {
  did: string
  /** The record's `digest` (a sha256), its key. */
  digest: string
  repository: string
  media_type: string
  artifact_type: string | null
  config_digest: string | null
  subject_digest: string | null
  /** Config plus layers, or the children of an index. */
  size: number
  /** JSON array of {os, architecture, variant?} for an index; null otherwise. */
  platforms: string | null
  description: string | null
  hold_did: string | null
  created_at: string
  /** The record as stored (JSON). */
  record: string
  indexed_at: number
}

export interface IndexTagTable {
  did: string
  repository: string
  tag: string
  digest: string
  created_at: string
}

export interface IndexRepoPageTable {
  did: string
  repository: string
  description: string | null
  record: string
  indexed_at: number
}

export interface IndexStarTable {
  /** Who starred. */
  did: string
  rkey: string
  subject_did: string
  repository: string
  created_at: string
}

export interface IndexHoldCaptainTable {
  hold_did: string
  owner_did: string
  public: number
  allow_all_crew: number
  region: string | null
  record: string
  indexed_at: number
}

export interface IndexHoldCrewTable {
  hold_did: string
  rkey: string
  member_did: string
  role: string | null
  /** JSON array of strings. */
  permissions: string
  tier: string | null
  indexed_at: number
}

export interface IndexRepoStatsTable {
  hold_did: string
  /** The io.atcr.hold.stats record key (its deletes name only that). */
  rkey: string
  owner_did: string
  repository: string
  pull_count: number
  push_count: number
  last_pull: string | null
  last_push: string | null
  indexed_at: number
}

/** Where a consumer of a source (a firehose or Jetstream URL) has read up to. */
export interface IngestCursorTable {
  source: string
  cursor: number
  updated_at: number
}

/** Which AppView instance consumes (see ingest/lease.ts). */
export interface IngestLeaseTable {
  name: string
  holder: string
  expires_at: number
}

export type AppViewSchema = {
  oauth_state: OAuthStateTable
  oauth_session: OAuthSessionTable
  web_session: WebSessionTable
  device_authorization: DeviceAuthorizationTable
  device: DeviceTable
  pds_session: PdsSessionTable
  registry_repository: RegistryRepositoryTable
  registry_blob_alias: RegistryBlobAliasTable
  repository_manifest: RepositoryManifestTable
  repository_blob: RepositoryBlobTable
  registry_upload: RegistryUploadTable
  registry_upload_part: RegistryUploadPartTable
  hold_health: HoldHealthTable
  index_account: IndexAccountTable
  index_manifest: IndexManifestTable
  index_tag: IndexTagTable
  index_repo_page: IndexRepoPageTable
  index_star: IndexStarTable
  index_hold_captain: IndexHoldCaptainTable
  index_hold_crew: IndexHoldCrewTable
  index_repo_stats: IndexRepoStatsTable
  ingest_cursor: IngestCursorTable
  ingest_lease: IngestLeaseTable
}
