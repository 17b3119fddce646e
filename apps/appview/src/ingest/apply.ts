// The one way into the network index: a record created, updated or deleted in some
// account's repository (from the firehose, Jetstream, a backfill, or this AppView's own
// writes) becomes rows of the index_* tables. Records are checked against their lexicon
// first; one that fails is skipped (the caller counts it), never half-written.
import {
  digestFromManifestRkey,
  LexiconValidationError,
  type ManifestRecord,
  NSID,
  parseRepoPageRkey,
  parseTagRkey,
  RecordKeyError,
  type RecordNsid,
  type RecordTypes,
  repoPageRkey,
  SELF_RKEY,
  statsRkey,
  validateRecordJson,
} from '@atcr/core/lexicons'
import { type LexValue, lexToJson } from '@atproto/lexicon'
import { AtUri } from '@atproto/syntax'
import type { Kysely } from 'kysely'
import type { AppViewSchema } from '../db/schema.ts'

/** The Bluesky profile record (display name, avatar). */
export const BSKY_PROFILE = 'app.bsky.actor.profile'

/** A record as it changed: `record` null means deleted. */
export interface RecordChange {
  did: string
  collection: string
  rkey: string
  /** The record value (atproto JSON, or the lex values a firehose decodes), or null. */
  record: unknown | null
}

/** What became of a change: rows written, rows removed, refused, or not ours to index. */
export type ApplyOutcome = 'indexed' | 'deleted' | 'invalid' | 'ignored'

/**
 * The collections a consumer asks its source for: ATCR's, and the Bluesky profile, whose
 * display name and avatar the index keeps for accounts it already has.
 */
export const WANTED_COLLECTIONS: readonly string[] = ['io.atcr.*', BSKY_PROFILE]

/** Collections written by users (their DIDs are accounts of the index). */
const ACCOUNT_COLLECTIONS = new Set<string>([
  NSID.manifest,
  NSID.tag,
  NSID.repoPage,
  NSID.sailorStar,
  NSID.sailorProfile,
])

const DESCRIPTION_ANNOTATION = 'org.opencontainers.image.description'
const IMAGE_CONFIG_TYPES = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.container.image.v1+json',
])

/** A record whose key or fields cannot be indexed (its lexicon allows it, the index does not). */
class UnindexableRecord extends Error {}

type Db = Kysely<AppViewSchema>

/**
 * Applies one change to the index (pass a transaction to apply several at once). Returns
 * 'invalid' for a record its lexicon refuses or whose key disagrees with its fields.
 */
export async function applyRecord(
  db: Db,
  change: RecordChange,
  now: number = Date.now(),
): Promise<ApplyOutcome> {
  if (change.collection === BSKY_PROFILE) return applyBskyProfile(db, change)
  const collection = change.collection as RecordNsid
  const write = WRITERS[collection]
  const remove = DELETERS[collection]
  if (!write || !remove) return 'ignored'
  if (holdsNul(change.did) || holdsNul(change.rkey)) return 'invalid'
  try {
    if (change.record === null) {
      await remove(db, change)
      return 'deleted'
    }
    const json = lexToJson(change.record as LexValue) as Record<string, unknown>
    const record = validateRecordJson(collection, json)
    if (holdsNul(json)) throw new UnindexableRecord('text with NUL characters cannot be indexed')
    await write(db, change, record as never, json, now)
    if (ACCOUNT_COLLECTIONS.has(collection)) await ensureAccount(db, change.did, now)
    return 'indexed'
  } catch (error) {
    if (
      error instanceof LexiconValidationError ||
      error instanceof RecordKeyError ||
      error instanceof UnindexableRecord
    ) {
      return 'invalid'
    }
    throw error
  }
}

/**
 * Whether a string anywhere in the value (keys included) holds NUL, which PostgreSQL text
 * refuses: such a record is skipped on either engine, not left to fail the consumer's batch.
 */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000')
  if (Array.isArray(value)) return value.some(holdsNul)
  if (typeof value !== 'object' || value === null) return false
  return Object.entries(value).some(([key, item]) => key.includes('\u0000') || holdsNul(item))
}

/** Makes sure the account has a row (its handle and PDS are filled in by IndexService). */
export async function ensureAccount(db: Db, did: string, now: number): Promise<void> {
  await db
    .insertInto('index_account')
    .values({ did, auto_remove_untagged: 0, indexed_at: now })
    .onConflict((c) => c.column('did').doNothing())
    .execute()
}

type Writer<N extends RecordNsid> = (
  db: Db,
  change: RecordChange,
  record: RecordTypes[N],
  json: Record<string, unknown>,
  now: number,
) => Promise<void>

type Deleter = (db: Db, change: RecordChange) => Promise<void>

function sizeOf(record: ManifestRecord): number {
  if (record.manifests) return record.manifests.reduce((sum, m) => sum + m.size, 0)
  return (record.config?.size ?? 0) + (record.layers ?? []).reduce((sum, l) => sum + l.size, 0)
}

function annotation(annotations: unknown, key: string): string | null {
  if (typeof annotations !== 'object' || annotations === null) return null
  const value = (annotations as Record<string, unknown>)[key]
  return typeof value === 'string' ? value : null
}

const writeManifest: Writer<typeof NSID.manifest> = async (db, change, record, json, now) => {
  if (digestFromManifestRkey(change.rkey) !== record.digest) {
    throw new UnindexableRecord('a manifest record must be keyed by its digest')
  }
  const configType = record.config?.mediaType
  const row = {
    repository: record.repository,
    media_type: record.mediaType,
    // OCI: without an artifactType, an artifact's type is its config's media type.
    artifact_type: configType && !IMAGE_CONFIG_TYPES.has(configType) ? configType : null,
    config_digest: record.config?.digest ?? null,
    subject_digest: record.subject?.digest ?? null,
    size: sizeOf(record),
    platforms: record.manifests
      ? JSON.stringify(
          record.manifests
            .filter((m) => m.platform)
            .map(({ platform: p }) => ({
              os: p!.os,
              architecture: p!.architecture,
              ...(p!.variant === undefined ? {} : { variant: p!.variant }),
            })),
        )
      : null,
    description: annotation(record.annotations, DESCRIPTION_ANNOTATION),
    hold_did: record.holdDid ?? null,
    created_at: record.createdAt,
    record: JSON.stringify(json),
    indexed_at: now,
  }
  await db
    .insertInto('index_manifest')
    .values({ did: change.did, digest: record.digest, ...row })
    .onConflict((c) => c.columns(['did', 'digest']).doUpdateSet(row))
    .execute()
}

/** The digest a tag points at: from its manifest AT-URI, else its manifestDigest. */
function tagTarget(record: RecordTypes[typeof NSID.tag]): string {
  if (record.manifest) {
    try {
      return digestFromManifestRkey(new AtUri(record.manifest).rkey)
    } catch {
      throw new UnindexableRecord('the tag names no manifest record')
    }
  }
  if (record.manifestDigest) return record.manifestDigest
  throw new UnindexableRecord('the tag names no manifest')
}

const writeTag: Writer<typeof NSID.tag> = async (db, change, record, _json, now) => {
  const keyed = parseTagRkey(change.rkey)
  if (keyed.repository !== record.repository || keyed.tag !== record.tag) {
    throw new UnindexableRecord('the tag record key names another tag')
  }
  const row = {
    digest: tagTarget(record),
    created_at: record.updatedAt ?? new Date(now).toISOString(),
  }
  await db
    .insertInto('index_tag')
    .values({ did: change.did, repository: record.repository, tag: record.tag, ...row })
    .onConflict((c) => c.columns(['did', 'repository', 'tag']).doUpdateSet(row))
    .execute()
}

const writeRepoPage: Writer<typeof NSID.repoPage> = async (db, change, record, json, now) => {
  if (repoPageRkey(record.repository) !== change.rkey) {
    throw new UnindexableRecord('the repository page key names another repository')
  }
  const row = {
    description: record.description ?? null,
    record: JSON.stringify(json),
    indexed_at: now,
  }
  await db
    .insertInto('index_repo_page')
    .values({ did: change.did, repository: record.repository, ...row })
    .onConflict((c) => c.columns(['did', 'repository']).doUpdateSet(row))
    .execute()
}

const writeStar: Writer<typeof NSID.sailorStar> = async (db, change, record) => {
  const subject = new AtUri(record.subject)
  if (subject.collection !== NSID.repoPage || !subject.hostname.startsWith('did:')) {
    throw new UnindexableRecord('a star must name a repository page by DID')
  }
  const row = {
    subject_did: subject.hostname,
    repository: parseRepoPageRkey(subject.rkey),
    created_at: record.createdAt,
  }
  await db
    .insertInto('index_star')
    .values({ did: change.did, rkey: change.rkey, ...row })
    .onConflict((c) => c.columns(['did', 'rkey']).doUpdateSet(row))
    .execute()
}

const writeProfile: Writer<typeof NSID.sailorProfile> = async (db, change, record, _json, now) => {
  if (change.rkey !== SELF_RKEY) throw new UnindexableRecord('a sailor profile is keyed self')
  const row = {
    default_hold: record.defaultHold ?? null,
    auto_remove_untagged: record.autoRemoveUntagged ? 1 : 0,
    oci_client: record.ociClient ?? null,
    indexed_at: now,
  }
  await db
    .insertInto('index_account')
    .values({ did: change.did, ...row })
    .onConflict((c) => c.column('did').doUpdateSet(row))
    .execute()
}

const writeCaptain: Writer<typeof NSID.holdCaptain> = async (db, change, record, json, now) => {
  if (change.rkey !== SELF_RKEY) throw new UnindexableRecord('a captain record is keyed self')
  const row = {
    owner_did: record.owner,
    public: record.public ? 1 : 0,
    allow_all_crew: record.allowAllCrew ? 1 : 0,
    region: record.region ?? null,
    record: JSON.stringify(json),
    indexed_at: now,
  }
  await db
    .insertInto('index_hold_captain')
    .values({ hold_did: change.did, ...row })
    .onConflict((c) => c.column('hold_did').doUpdateSet(row))
    .execute()
}

const writeCrew: Writer<typeof NSID.holdCrew> = async (db, change, record, _json, now) => {
  const row = {
    member_did: record.member,
    role: record.role ?? null,
    permissions: JSON.stringify(record.permissions),
    tier: record.tier ?? null,
    indexed_at: now,
  }
  await db
    .insertInto('index_hold_crew')
    .values({ hold_did: change.did, rkey: change.rkey, ...row })
    .onConflict((c) => c.columns(['hold_did', 'rkey']).doUpdateSet(row))
    .execute()
}

const writeStats: Writer<typeof NSID.holdStats> = async (db, change, record, _json, now) => {
  if (statsRkey(record.ownerDid, record.repository) !== change.rkey) {
    throw new UnindexableRecord('the stats record key names another repository')
  }
  const row = {
    rkey: change.rkey,
    pull_count: record.pullCount,
    push_count: record.pushCount,
    last_pull: record.lastPull ?? null,
    last_push: record.lastPush ?? null,
    indexed_at: now,
  }
  await db
    .insertInto('index_repo_stats')
    .values({
      hold_did: change.did,
      owner_did: record.ownerDid,
      repository: record.repository,
      ...row,
    })
    .onConflict((c) => c.columns(['hold_did', 'owner_did', 'repository']).doUpdateSet(row))
    .execute()
}

const WRITERS: Record<string, Writer<never>> = {
  [NSID.manifest]: writeManifest,
  [NSID.tag]: writeTag,
  [NSID.repoPage]: writeRepoPage,
  [NSID.sailorStar]: writeStar,
  [NSID.sailorProfile]: writeProfile,
  [NSID.holdCaptain]: writeCaptain,
  [NSID.holdCrew]: writeCrew,
  [NSID.holdStats]: writeStats,
} as Record<string, Writer<never>>

const DELETERS: Partial<Record<string, Deleter>> = {
  [NSID.manifest]: async (db, { did, rkey }) => {
    await db
      .deleteFrom('index_manifest')
      .where('did', '=', did)
      .where('digest', '=', digestFromManifestRkey(rkey))
      .execute()
  },
  [NSID.tag]: async (db, { did, rkey }) => {
    const { repository, tag } = parseTagRkey(rkey)
    await db
      .deleteFrom('index_tag')
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('tag', '=', tag)
      .execute()
  },
  [NSID.repoPage]: async (db, { did, rkey }) => {
    await db
      .deleteFrom('index_repo_page')
      .where('did', '=', did)
      .where('repository', '=', parseRepoPageRkey(rkey))
      .execute()
  },
  [NSID.sailorStar]: async (db, { did, rkey }) => {
    await db.deleteFrom('index_star').where('did', '=', did).where('rkey', '=', rkey).execute()
  },
  [NSID.sailorProfile]: async (db, { did }) => {
    await db
      .updateTable('index_account')
      .set({ default_hold: null, auto_remove_untagged: 0, oci_client: null })
      .where('did', '=', did)
      .execute()
  },
  [NSID.holdCaptain]: async (db, { did }) => {
    await db.deleteFrom('index_hold_captain').where('hold_did', '=', did).execute()
  },
  [NSID.holdCrew]: async (db, { did, rkey }) => {
    await db
      .deleteFrom('index_hold_crew')
      .where('hold_did', '=', did)
      .where('rkey', '=', rkey)
      .execute()
  },
  [NSID.holdStats]: async (db, { did, rkey }) => {
    await db
      .deleteFrom('index_repo_stats')
      .where('hold_did', '=', did)
      .where('rkey', '=', rkey)
      .execute()
  },
}

const MAX_DISPLAY_NAME = 640

/**
 * An account's Bluesky profile (not an ATCR lexicon: its two fields are checked here): the
 * display name and avatar of an account the index already has. The avatar is a URL of the
 * blob on the account's PDS.
 */
async function applyBskyProfile(db: Db, change: RecordChange): Promise<ApplyOutcome> {
  if (change.rkey !== SELF_RKEY) return 'ignored'
  if (holdsNul(change.did)) return 'invalid'
  const account = await db
    .selectFrom('index_account')
    .select('pds_endpoint')
    .where('did', '=', change.did)
    .executeTakeFirst()
  if (!account) return 'ignored'
  let displayName: string | null = null
  let avatarUrl: string | null = null
  if (change.record !== null) {
    const json = lexToJson(change.record as LexValue) as Record<string, unknown>
    const name = json.displayName
    const avatar = json.avatar as { ref?: { $link?: unknown }; mimeType?: unknown } | undefined
    if (
      name !== undefined &&
      (typeof name !== 'string' || name.length > MAX_DISPLAY_NAME || holdsNul(name))
    ) {
      return 'invalid'
    }
    displayName = typeof name === 'string' && name !== '' ? name : null
    const cid = avatar?.ref?.$link
    if (typeof cid === 'string' && /^[a-z0-9]+$/.test(cid) && account.pds_endpoint) {
      const url = new URL('/xrpc/com.atproto.sync.getBlob', account.pds_endpoint)
      url.searchParams.set('did', change.did)
      url.searchParams.set('cid', cid)
      avatarUrl = url.href
    }
  }
  await db
    .updateTable('index_account')
    .set({ display_name: displayName, avatar_url: avatarUrl })
    .where('did', '=', change.did)
    .execute()
  return change.record === null ? 'deleted' : 'indexed'
}
