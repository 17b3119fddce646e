// Unauthenticated reads of a user's public repository on their PDS (getRecord,
// listRecords, getBlob), through the guarded fetch and a short cache that the AppView's
// own writes invalidate.
import {
  type CacheCounter,
  ResponseTooLargeError,
  readBoundedJson,
  TtlCache,
} from '@atcr/core/identity'
import { OciError } from '@atcr/core/oci'
import type { AppViewBase } from '../context.ts'

/** A record as the PDS returns it, in atproto JSON form. */
export interface StoredRecord<T = Record<string, unknown>> {
  uri: string
  cid: string
  rkey: string
  value: T
}

const RECORD_TTL_MS = 10_000
const BLOB_TTL_MS = 10 * 60_000
const REQUEST_TIMEOUT_MS = 15_000
const MAX_RECORD_RESPONSE = 1024 * 1024
const LIST_PAGE = 100

/** The PDS did not answer usefully (down, 5xx, malformed): the registry is unavailable. */
function unavailable(what: string, cause?: unknown): OciError {
  return new OciError('UNAVAILABLE', { message: `the user's PDS failed: ${what}`, cause })
}

export interface PdsReaderOptions {
  /** Largest blob read into memory (manifests). */
  maxBlobBytes: number
  /** Counts the hits and misses of the record and blob caches (metrics). */
  cacheCounter?: (cache: 'pds_record' | 'pds_blob') => CacheCounter
}

export class PdsReader {
  readonly #fetch: AppViewBase['fetch']
  readonly #maxBlobBytes: number
  readonly #records: TtlCache<StoredRecord | null>
  readonly #blobs: TtlCache<Uint8Array>

  constructor(fetch: AppViewBase['fetch'], options: PdsReaderOptions) {
    this.#fetch = fetch
    this.#maxBlobBytes = options.maxBlobBytes
    this.#records = new TtlCache({
      ttlMs: RECORD_TTL_MS,
      maxEntries: 5000,
      counter: options.cacheCounter?.('pds_record'),
    })
    // Blobs are content-addressed: a CID always names the same bytes.
    this.#blobs = new TtlCache({
      ttlMs: BLOB_TTL_MS,
      maxEntries: 256,
      counter: options.cacheCounter?.('pds_blob'),
    })
  }

  /** One record, or null when the repository has no such record. */
  async getRecord(
    pds: string,
    did: string,
    collection: string,
    rkey: string,
  ): Promise<StoredRecord | null> {
    return this.#records.getOrLoad(recordKey(did, collection, rkey), async () => {
      const url = xrpcUrl(pds, 'com.atproto.repo.getRecord', { repo: did, collection, rkey })
      const response = await this.#get(url)
      if (response.status === 400 || response.status === 404) {
        const body = await readJson(response).catch(() => ({}))
        const error = (body as { error?: unknown }).error
        if (error === 'RecordNotFound' || response.status === 404) return null
        throw unavailable(`getRecord answered ${response.status} ${String(error)}`)
      }
      if (!response.ok) {
        await response.body?.cancel()
        throw unavailable(`getRecord answered ${response.status}`)
      }
      const body = (await readJson(response)) as { uri?: unknown; cid?: unknown; value?: unknown }
      if (typeof body.uri !== 'string' || typeof body.value !== 'object' || body.value === null) {
        throw unavailable('getRecord returned no record')
      }
      return {
        uri: body.uri,
        cid: typeof body.cid === 'string' ? body.cid : '',
        rkey,
        value: body.value as Record<string, unknown>,
      }
    })
  }

  /**
   * Every record of a collection, page by page (the cursor is the PDS's). With `after`,
   * only the records whose keys sort after it, in ascending key order.
   */
  async *listRecords(
    pds: string,
    did: string,
    collection: string,
    options: { after?: string } = {},
  ): AsyncIterable<StoredRecord> {
    let cursor = options.after
    for (;;) {
      const params: Record<string, string> = {
        repo: did,
        collection,
        limit: String(LIST_PAGE),
      }
      if (options.after !== undefined) params.reverse = 'true'
      if (cursor) params.cursor = cursor
      const response = await this.#get(xrpcUrl(pds, 'com.atproto.repo.listRecords', params))
      if (!response.ok) {
        const body = await readJson(response).catch(() => ({}))
        // A repository that does not exist (deleted account) lists nothing.
        if ((body as { error?: unknown }).error === 'RepoNotFound') return
        throw unavailable(`listRecords answered ${response.status}`)
      }
      const body = (await readJson(response)) as { records?: unknown; cursor?: unknown }
      const records = Array.isArray(body.records) ? body.records : []
      for (const raw of records) {
        const record = raw as { uri?: unknown; cid?: unknown; value?: unknown }
        if (typeof record.uri !== 'string' || typeof record.value !== 'object' || !record.value) {
          continue
        }
        const rkey = record.uri.slice(record.uri.lastIndexOf('/') + 1)
        yield {
          uri: record.uri,
          cid: typeof record.cid === 'string' ? record.cid : '',
          rkey,
          value: record.value as Record<string, unknown>,
        }
      }
      if (typeof body.cursor !== 'string' || body.cursor === '' || records.length === 0) return
      cursor = body.cursor
    }
  }

  /** A blob's bytes, or null when the PDS does not have it. */
  async getBlob(pds: string, did: string, cid: string): Promise<Uint8Array | null> {
    const cached = this.#blobs.get(cid)
    if (cached) return cached
    const response = await this.#get(xrpcUrl(pds, 'com.atproto.sync.getBlob', { did, cid }))
    if (response.status === 400 || response.status === 404) {
      await response.body?.cancel()
      return null
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw unavailable(`getBlob answered ${response.status}`)
    }
    let bytes: Uint8Array
    try {
      bytes = await readBounded(response, this.#maxBlobBytes)
    } catch (error) {
      if (error instanceof ResponseTooLargeError) throw unavailable('manifest blob too large')
      throw unavailable('reading a blob failed', error)
    }
    this.#blobs.set(cid, bytes)
    return bytes
  }

  /** Forget a cached record after writing or deleting it. */
  invalidate(did: string, collection: string, rkey: string): void {
    this.#records.delete(recordKey(did, collection, rkey))
  }

  /** Remember a record just written, so the next read sees it without asking the PDS. */
  remember(did: string, collection: string, record: StoredRecord | null, rkey: string): void {
    this.#records.set(recordKey(did, collection, rkey), record)
  }

  async #get(url: URL): Promise<Response> {
    try {
      return await this.#fetch(url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
    } catch (error) {
      throw unavailable(`${url.origin} did not answer`, error)
    }
  }
}

function recordKey(did: string, collection: string, rkey: string): string {
  return `${did} ${collection} ${rkey}`
}

export function xrpcUrl(base: string, nsid: string, params: Record<string, string>): URL {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value)
  return url
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await readBoundedJson(response, MAX_RECORD_RESPONSE)
  } catch (error) {
    throw unavailable('malformed response', error)
  }
}

async function readBounded(response: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel()
    throw new ResponseTooLargeError(response.url, maxBytes)
  }
  if (!response.body) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let total = 0
  for await (const chunk of response.body) {
    total += chunk.byteLength
    if (total > maxBytes) throw new ResponseTooLargeError(response.url, maxBytes)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
