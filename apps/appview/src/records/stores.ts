// Manifests and tags as records in the owner's PDS: io.atcr.manifest keyed by the digest's
// hex (the raw manifest bytes kept as its manifestBlob), io.atcr.tag keyed by
// repository and tag. Reads are public and cached; writes go through the owner's session.
import {
  digestFromManifestRkey,
  LexiconValidationError,
  type ManifestRecord,
  manifestRkey,
  NSID,
  parseTagRkey,
  RecordKeyError,
  type TagRecord,
  tagRkey,
  validateRecordJson,
} from '@atcr/core/lexicons'
import { digestOf, OciError } from '@atcr/core/oci'
import { type Agent, Client, type EncodingString } from '@atproto/lex-client'
import type { RecordChange } from '../ingest/apply.ts'
import { inRepo, lexRecord } from './lex-record.ts'
import type { ManifestDocument, OciDescriptor } from './manifest-document.ts'
import type { PdsReader, StoredRecord } from './pds-reader.ts'
import { retryPdsWrite } from './pds-retry.ts'

/**
 * The network index as the stores use it: the records they write go in at once, and for an
 * account the index holds whole (`authoritative`), reads come from it instead of the PDS.
 */
export interface RecordIndex {
  apply(change: RecordChange): Promise<unknown>
  authoritative(did: string): Promise<boolean>
  tag(
    did: string,
    repository: string,
    tag: string,
  ): Promise<{ digest: string; created_at: string } | null>
  tags(
    did: string,
    repository: string,
    options: { after?: string; limit?: number },
  ): Promise<{ tag: string; digest: string; created_at: string }[]>
  ownerTags(
    did: string,
  ): Promise<{ repository: string; tag: string; digest: string; created_at: string }[]>
  manifestRecord(did: string, digest: string): Promise<Record<string, unknown> | null>
  manifestRecords(did: string, repository?: string): Promise<Record<string, unknown>[]>
}

/** Tags read from the index at a time while listing. */
const INDEX_PAGE = 1000

/** Whose repository: the owner's DID and the PDS that hosts it. */
export interface Owner {
  did: string
  pds: string
}

/**
 * A manifest record in JSON form (blob refs as `{$type: 'blob', ref: {$link}}`), with the
 * fields ATCR adds beyond the lexicon (see buildManifestRecord).
 */
export type ManifestRecordJson = Omit<ManifestRecord, 'manifestBlob'> & {
  manifestBlob?: BlobJson
  sha512Digest?: string
  omittedAnnotations?: string[]
}

/**
 * The digest clients know content by: a record's or descriptor's `digest` is always a
 * sha256 (the lexicon's digest fields hold 128 characters at most), and `sha512Digest`
 * carries the sha512 when the client used that.
 */
export function contentDigest(value: { digest: string }): string {
  const sha512 = (value as { sha512Digest?: unknown }).sha512Digest
  return typeof sha512 === 'string' ? sha512 : value.digest
}

export interface BlobJson {
  $type: 'blob'
  ref: { $link: string }
  mimeType: string
  size: number
}

export interface StoredManifest {
  uri: string
  rkey: string
  digest: string
  value: ManifestRecordJson
}

export interface StoredTag {
  uri: string
  repository: string
  tag: string
  /** The digest of the manifest the tag points to. */
  digest: string
  value: TagRecord
}

export function manifestUri(did: string, digest: string): string {
  return `at://${did}/${NSID.manifest}/${manifestRkey(digest)}`
}

/** The digest a tag points to: from its manifest AT-URI, else its manifestDigest. */
function tagDigest(value: Record<string, unknown>): string | undefined {
  const uri = value.manifest
  if (typeof uri === 'string') {
    const rkey = uri.slice(uri.lastIndexOf('/') + 1)
    try {
      return digestFromManifestRkey(rkey)
    } catch (error) {
      if (!(error instanceof RecordKeyError)) throw error
    }
  }
  return typeof value.manifestDigest === 'string' ? value.manifestDigest : undefined
}

function asManifest(record: StoredRecord): StoredManifest | null {
  const value = record.value as unknown as ManifestRecordJson
  if (typeof value.digest !== 'string' || typeof value.repository !== 'string') return null
  return { uri: record.uri, rkey: record.rkey, digest: value.digest, value }
}

function asTag(record: StoredRecord): StoredTag | null {
  const value = record.value as unknown as TagRecord
  const digest = tagDigest(record.value)
  if (typeof value.repository !== 'string' || typeof value.tag !== 'string' || !digest) {
    return null
  }
  return { uri: record.uri, repository: value.repository, tag: value.tag, digest, value }
}

/** A manifest record the index holds, as the PDS would have returned it. */
function indexedManifest(did: string, value: Record<string, unknown>): StoredManifest | null {
  const digest = value.digest
  if (typeof digest !== 'string') return null
  const rkey = manifestRkey(digest)
  return {
    uri: `at://${did}/${NSID.manifest}/${rkey}`,
    rkey,
    digest,
    value: value as unknown as ManifestRecordJson,
  }
}

/** A tag the index holds (its record's fields that the index keeps). */
function indexedTag(
  did: string,
  row: { repository: string; tag: string; digest: string; created_at: string },
): StoredTag {
  const { repository, tag, digest } = row
  return {
    uri: `at://${did}/${NSID.tag}/${tagRkey(repository, tag)}`,
    repository,
    tag,
    digest,
    value: {
      $type: NSID.tag,
      repository,
      tag,
      manifest: manifestUri(did, digest),
      manifestDigest: digest,
      updatedAt: row.created_at,
    },
  }
}

/**
 * Maps a failed write to the user's PDS onto an OCI error by what the PDS meant: too large
 * (413), refused as invalid (MANIFEST_INVALID), not allowed (DENIED), down (UNAVAILABLE).
 */
export function pdsWriteError(what: string, error: unknown): OciError {
  if (error instanceof OciError) return error
  const status = (error as { status?: unknown }).status
  const message = error instanceof Error ? error.message : String(error)
  const reason = `your PDS refused to ${what}: ${message}`
  if (status === 413) return new OciError('MANIFEST_INVALID', { status: 413, message: reason })
  if (status === 401 || status === 403) return new OciError('DENIED', { message: reason })
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new OciError('MANIFEST_INVALID', { message: reason, cause: error })
  }
  return new OciError('UNAVAILABLE', {
    message: `your PDS failed to ${what}: ${message}`,
    cause: error,
  })
}

/** Largest record JSON written: the PDS takes at most 1,000,000 bytes of putRecord input. */
export const RECORD_BUDGET = 900_000

/** sha512 digests of descriptors, mapped to the sha256 of the same content. */
export type Sha256Of = ReadonlyMap<string, string>

function blobReference(descriptor: OciDescriptor, sha256Of: Sha256Of): Record<string, unknown> {
  const ref: Record<string, unknown> = {
    mediaType: descriptor.mediaType,
    size: descriptor.size,
    digest: descriptor.digest,
  }
  if (descriptor.digest.startsWith('sha512:')) {
    const sha256 = sha256Of.get(descriptor.digest)
    if (sha256 === undefined) {
      throw new OciError('MANIFEST_BLOB_UNKNOWN', {
        message: `${descriptor.digest} is not known here by its sha256: push it first`,
        detail: { digest: descriptor.digest },
      })
    }
    ref.digest = sha256
    ref.sha512Digest = descriptor.digest
  }
  if (descriptor.annotations) ref.annotations = descriptor.annotations
  if (descriptor.urls) ref.urls = descriptor.urls
  return ref
}

function manifestReference(descriptor: OciDescriptor, sha256Of: Sha256Of): Record<string, unknown> {
  const ref = blobReference(descriptor, sha256Of)
  delete ref.urls
  const platform = descriptor.platform
  if (platform) {
    const p: Record<string, unknown> = { architecture: platform.architecture, os: platform.os }
    if (platform.variant !== undefined) p.variant = platform.variant
    if (platform['os.version'] !== undefined) p.osVersion = platform['os.version']
    if (platform['os.features'] !== undefined) p.osFeatures = platform['os.features']
    ref.platform = p
  }
  return ref
}

export interface ManifestRecordInput {
  repository: string
  /** The sha256 of the manifest's bytes (its record key). */
  digest: string
  /** The sha512 of the bytes, when the client pushed the manifest by it. */
  sha512Digest?: string
  document: ManifestDocument
  /** sha256 digests for the sha512 digests the manifest references. */
  sha256Of: Sha256Of
  holdDid: string
  createdAt: string
  manifestBlob?: BlobJson
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value))
}

/**
 * Annotations take the room the PDS lacks: the largest are left out (from the record only;
 * the manifest's bytes keep them) until the record fits, and `omittedAnnotations` lists
 * where they were (`annotations`, `layers/3/annotations`...).
 */
function fitAnnotations(record: Record<string, unknown>): void {
  let excess = jsonBytes(record) - RECORD_BUDGET
  if (excess <= 0) return
  const holders: { path: string; holder: Record<string, unknown>; size: number }[] = []
  const consider = (path: string, holder: unknown) => {
    const h = holder as Record<string, unknown> | undefined
    if (h?.annotations !== undefined)
      holders.push({ path, holder: h, size: jsonBytes(h.annotations) })
  }
  consider('annotations', record)
  for (const field of ['config', 'subject']) consider(`${field}/annotations`, record[field])
  for (const field of ['layers', 'manifests']) {
    const list = record[field]
    if (!Array.isArray(list)) continue
    for (const [i, item] of list.entries()) consider(`${field}/${i}/annotations`, item)
  }
  holders.sort((a, b) => b.size - a.size)
  const omitted: string[] = []
  for (const { path, holder, size } of holders) {
    if (excess <= 0) break
    delete holder.annotations
    omitted.push(path)
    excess -= size
  }
  record.omittedAnnotations = omitted.sort()
}

/**
 * The io.atcr.manifest record for a manifest, checked against the lexicon. The lexicon's
 * digest fields hold sha256 digests; sha512 ones travel in `sha512Digest` beside them.
 * Annotations that do not fit the PDS's record size are left out (`omittedAnnotations`).
 * Throws MANIFEST_INVALID saying which field cannot be recorded.
 */
export function buildManifestRecord(input: ManifestRecordInput): ManifestRecordJson {
  const { document, sha256Of } = input
  const record: Record<string, unknown> = {
    $type: NSID.manifest,
    repository: input.repository,
    digest: input.digest,
    mediaType: document.mediaType,
    schemaVersion: document.schemaVersion,
    createdAt: input.createdAt,
    holdDid: input.holdDid,
  }
  if (input.sha512Digest) record.sha512Digest = input.sha512Digest
  if (document.kind === 'image') {
    if (document.config) record.config = blobReference(document.config, sha256Of)
    record.layers = document.layers.map((layer) => blobReference(layer, sha256Of))
  } else {
    record.manifests = document.manifests.map((child) => manifestReference(child, sha256Of))
  }
  if (document.subject) record.subject = blobReference(document.subject, sha256Of)
  if (document.annotations) record.annotations = document.annotations
  if (input.manifestBlob) record.manifestBlob = input.manifestBlob
  fitAnnotations(record)
  if (jsonBytes(record) > RECORD_BUDGET) {
    throw new OciError('MANIFEST_INVALID', {
      status: 413,
      message: `the manifest lists too much to be recorded in a PDS record (${RECORD_BUDGET} bytes, annotations left out)`,
    })
  }
  try {
    validateRecordJson(NSID.manifest, record)
  } catch (error) {
    if (error instanceof LexiconValidationError) {
      throw new OciError('MANIFEST_INVALID', {
        message: `the manifest cannot be recorded as ${NSID.manifest}: ${error.message}`,
      })
    }
    throw error
  }
  return record as unknown as ManifestRecordJson
}

export class ManifestStore {
  readonly #reader: PdsReader
  readonly #index: RecordIndex

  constructor(reader: PdsReader, index: RecordIndex) {
    this.#reader = reader
    this.#index = index
  }

  async get(owner: Owner, digest: string): Promise<StoredManifest | null> {
    let rkey: string
    try {
      rkey = manifestRkey(digest)
    } catch {
      return null
    }
    if (await this.#index.authoritative(owner.did)) {
      const value = await this.#index.manifestRecord(owner.did, digest)
      return value ? indexedManifest(owner.did, value) : null
    }
    const record = await this.#reader.getRecord(owner.pds, owner.did, NSID.manifest, rkey)
    return record ? asManifest(record) : null
  }

  /**
   * The manifest's exact bytes, from its manifestBlob; checked against the record's digest
   * so that a tampered or mismatched blob is never served.
   */
  async bytes(owner: Owner, manifest: StoredManifest): Promise<Uint8Array> {
    const blob = manifest.value.manifestBlob
    const cid = blob?.ref?.$link
    if (typeof cid !== 'string') {
      throw new OciError('MANIFEST_UNKNOWN', {
        message: `the manifest record ${manifest.uri} carries no manifestBlob`,
      })
    }
    const bytes = await this.#reader.getBlob(owner.pds, owner.did, cid)
    if (!bytes) {
      throw new OciError('MANIFEST_UNKNOWN', {
        message: `the PDS no longer has the manifest blob of ${manifest.uri}`,
      })
    }
    const algorithm = manifest.digest.startsWith('sha512:') ? 'sha512' : 'sha256'
    if (digestOf(bytes, algorithm) !== manifest.digest) {
      throw new OciError('MANIFEST_UNKNOWN', {
        message: `the manifest blob of ${manifest.uri} does not match its digest`,
      })
    }
    return bytes
  }

  /** The owner's manifest records, or those naming one repository. */
  async *list(owner: Owner, repository?: string): AsyncIterable<StoredManifest> {
    if (await this.#index.authoritative(owner.did)) {
      for (const value of await this.#index.manifestRecords(owner.did, repository)) {
        const manifest = indexedManifest(owner.did, value)
        if (manifest) yield manifest
      }
      return
    }
    for await (const record of this.#reader.listRecords(owner.pds, owner.did, NSID.manifest)) {
      const manifest = asManifest(record)
      if (manifest && (repository === undefined || manifest.value.repository === repository)) {
        yield manifest
      }
    }
  }

  /** Uploads the bytes as a blob, then writes the record that references them. */
  async put(
    agent: Agent,
    owner: Owner,
    input: Omit<ManifestRecordInput, 'manifestBlob'>,
    bytes: Uint8Array,
  ): Promise<StoredManifest> {
    // Checked before anything is written, so an unrecordable manifest leaves no blob.
    buildManifestRecord(input)
    const client = new Client(agent)
    let blob: BlobJson
    try {
      const uploaded = await retryPdsWrite(() =>
        client.uploadBlob(bytes, { encoding: input.document.mediaType as EncodingString }),
      )
      const ref = uploaded.body.blob
      if (!('ref' in ref)) throw new Error('it answered with a blob reference of the old form')
      blob = {
        $type: 'blob',
        ref: { $link: ref.ref.toString() },
        mimeType: ref.mimeType,
        size: ref.size,
      }
    } catch (error) {
      throw pdsWriteError('store the manifest blob', error)
    }
    const record = buildManifestRecord({ ...input, manifestBlob: blob })
    const rkey = manifestRkey(input.digest)
    let written: { uri: string; cid: string }
    try {
      const response = await retryPdsWrite(() =>
        client.putRecord(lexRecord(record), rkey, inRepo(owner.did)),
      )
      written = response.body
    } catch (error) {
      this.#reader.invalidate(owner.did, NSID.manifest, rkey)
      throw pdsWriteError('write the manifest record', error)
    }
    const stored: StoredRecord = {
      uri: written.uri,
      cid: written.cid,
      rkey,
      value: record as unknown as Record<string, unknown>,
    }
    this.#reader.remember(owner.did, NSID.manifest, stored, rkey)
    await this.#index.apply({ did: owner.did, collection: NSID.manifest, rkey, record })
    return { uri: written.uri, rkey, digest: input.digest, value: record }
  }

  /**
   * Rewrites a record to name another repository that holds the manifest (its own was
   * deleted from), so that the records keep telling the truth.
   */
  async setRepository(
    agent: Agent,
    owner: Owner,
    manifest: StoredManifest,
    repository: string,
  ): Promise<void> {
    const record = { ...manifest.value, $type: NSID.manifest, repository }
    const client = new Client(agent)
    try {
      const response = await retryPdsWrite(() =>
        client.putRecord(lexRecord(record), manifest.rkey, inRepo(owner.did)),
      )
      const value = record as unknown as Record<string, unknown>
      this.#reader.remember(
        owner.did,
        NSID.manifest,
        { uri: response.body.uri, cid: response.body.cid, rkey: manifest.rkey, value },
        manifest.rkey,
      )
    } catch (error) {
      this.#reader.invalidate(owner.did, NSID.manifest, manifest.rkey)
      throw pdsWriteError('update the manifest record', error)
    }
    await this.#index.apply({
      did: owner.did,
      collection: NSID.manifest,
      rkey: manifest.rkey,
      record,
    })
  }

  async delete(agent: Agent, owner: Owner, digest: string): Promise<void> {
    const rkey = manifestRkey(digest)
    try {
      const client = new Client(agent)
      await retryPdsWrite(() => client.deleteRecord(NSID.manifest, rkey, inRepo(owner.did)))
    } catch (error) {
      throw pdsWriteError('delete the manifest record', error)
    } finally {
      this.#reader.invalidate(owner.did, NSID.manifest, rkey)
    }
    this.#reader.remember(owner.did, NSID.manifest, null, rkey)
    await this.#index.apply({ did: owner.did, collection: NSID.manifest, rkey, record: null })
  }
}

// A tag as OCI spells it: what can follow a repository's key prefix as a listing cursor.
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

export class TagStore {
  readonly #reader: PdsReader
  readonly #index: RecordIndex

  constructor(reader: PdsReader, index: RecordIndex) {
    this.#reader = reader
    this.#index = index
  }

  async get(owner: Owner, repository: string, tag: string): Promise<StoredTag | null> {
    if (await this.#index.authoritative(owner.did)) {
      const row = await this.#index.tag(owner.did, repository, tag)
      return row ? indexedTag(owner.did, { repository, tag, ...row }) : null
    }
    const record = await this.#reader.getRecord(
      owner.pds,
      owner.did,
      NSID.tag,
      tagRkey(repository, tag),
    )
    return record ? asTag(record) : null
  }

  /**
   * Every tag of the owner, or only those of one repository: tag keys start with the
   * repository (`tools~app:`), so those are read from the PDS as one range of keys, in
   * tag order, from past `afterTag` when given.
   */
  async *list(
    owner: Owner,
    repository?: string,
    options: { afterTag?: string } = {},
  ): AsyncIterable<StoredTag> {
    if (await this.#index.authoritative(owner.did)) {
      yield* this.#indexed(owner.did, repository, options.afterTag)
      return
    }
    const prefix = repository === undefined ? undefined : tagRkey(repository, '_').slice(0, -1)
    // With afterTag, the PDS starts past that tag's key (tags sort as their keys do).
    const after =
      prefix !== undefined && options.afterTag !== undefined && TAG.test(options.afterTag)
        ? `${prefix}${options.afterTag}`
        : prefix
    const records = this.#reader.listRecords(owner.pds, owner.did, NSID.tag, {
      ...(after === undefined ? {} : { after }),
    })
    for await (const record of records) {
      if (prefix !== undefined && !record.rkey.startsWith(prefix)) return
      const tag = asTag(record)
      if (!tag) continue
      if (repository !== undefined) {
        // The key names the repository too; a record whose fields disagree with it is skipped.
        let keyed: { repository: string; tag: string }
        try {
          keyed = parseTagRkey(record.rkey)
        } catch {
          continue
        }
        if (keyed.repository !== repository || tag.repository !== repository) continue
      }
      yield tag
    }
  }

  /**
   * The names of a repository's tags after `after`, at most `limit`: one range of the index
   * when it answers for the owner, else read from the PDS until enough were found.
   */
  async names(
    owner: Owner,
    repository: string,
    options: { after?: string; limit?: number } = {},
  ): Promise<string[]> {
    const { after, limit = Number.POSITIVE_INFINITY } = options
    if (await this.#index.authoritative(owner.did)) {
      const rows = await this.#index.tags(owner.did, repository, options)
      return rows.map((row) => row.tag)
    }
    const names: string[] = []
    const listed = this.list(owner, repository, after === undefined ? {} : { afterTag: after })
    for await (const tag of listed) {
      if (after !== undefined && tag.tag <= after) continue
      names.push(tag.tag)
      if (names.length >= limit) break
    }
    return names
  }

  async *#indexed(
    did: string,
    repository: string | undefined,
    after: string | undefined,
  ): AsyncIterable<StoredTag> {
    if (repository === undefined) {
      for (const row of await this.#index.ownerTags(did)) yield indexedTag(did, row)
      return
    }
    let last = after
    for (;;) {
      const rows = await this.#index.tags(did, repository, {
        ...(last === undefined ? {} : { after: last }),
        limit: INDEX_PAGE,
      })
      for (const row of rows) yield indexedTag(did, { repository, ...row })
      if (rows.length < INDEX_PAGE) return
      last = rows[rows.length - 1]!.tag
    }
  }

  async put(
    agent: Agent,
    owner: Owner,
    input: { repository: string; tag: string; digest: string; mediaType: string },
  ): Promise<void> {
    const rkey = tagRkey(input.repository, input.tag)
    const record = {
      $type: NSID.tag,
      repository: input.repository,
      tag: input.tag,
      manifest: manifestUri(owner.did, input.digest),
      manifestDigest: input.digest,
      mediaType: input.mediaType,
      updatedAt: new Date().toISOString(),
    }
    validateRecordJson(NSID.tag, record)
    let written: { uri: string; cid: string }
    try {
      const client = new Client(agent)
      const response = await retryPdsWrite(() =>
        client.putRecord(lexRecord(record), rkey, inRepo(owner.did)),
      )
      written = response.body
    } catch (error) {
      this.#reader.invalidate(owner.did, NSID.tag, rkey)
      throw pdsWriteError('write the tag record', error)
    }
    this.#reader.remember(
      owner.did,
      NSID.tag,
      { uri: written.uri, cid: written.cid, rkey, value: record },
      rkey,
    )
    await this.#index.apply({ did: owner.did, collection: NSID.tag, rkey, record })
  }

  async delete(agent: Agent, owner: Owner, repository: string, tag: string): Promise<void> {
    const rkey = tagRkey(repository, tag)
    try {
      const client = new Client(agent)
      await retryPdsWrite(() => client.deleteRecord(NSID.tag, rkey, inRepo(owner.did)))
    } catch (error) {
      throw pdsWriteError('delete the tag record', error)
    } finally {
      this.#reader.invalidate(owner.did, NSID.tag, rkey)
    }
    this.#reader.remember(owner.did, NSID.tag, null, rkey)
    await this.#index.apply({ did: owner.did, collection: NSID.tag, rkey, record: null })
  }
}
