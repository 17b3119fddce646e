// The AppView's side of the hold protocol, over HTTP only: resolve a hold DID to its
// endpoint, call its io.atcr.hold.* methods with the caller's service token, and ask it for
// OCI blobs with com.atproto.sync.getBlob.
import {
  didWebFromUrl,
  getServiceEndpoint,
  IdentityError,
  readBoundedText,
  type StreamUploadInit,
  TtlCache,
} from '@atcr/core/identity'
import { createDigester, type DigestAlgorithm, OciError } from '@atcr/core/oci'
import { NoSessionError } from '../auth/types.ts'
import type { AppViewServices } from '../context.ts'
import { xrpcUrl } from '../records/pds-reader.ts'
import { BlobAliases } from './blob-aliases.ts'

export interface Hold {
  did: string
  /** Base URL of the hold's XRPC service, no trailing slash. */
  endpoint: string
}

/** An XRPC error answer of a hold: its status, error name and message. */
export class HoldXrpcError extends Error {
  override readonly name = 'HoldXrpcError'
  readonly status: number
  readonly error: string
  readonly nsid: string

  constructor(nsid: string, status: number, error: string, message: string) {
    super(`${nsid} answered ${status} ${error}: ${message}`)
    this.nsid = nsid
    this.status = status
    this.error = error
  }
}

const CALL_TIMEOUT_MS = 30_000
const MAX_JSON_RESPONSE = 1024 * 1024

/** Who a call to a hold is made for: a DID whose service tokens we can mint, or nobody. */
export type HoldCaller = string | null

export function holdUnavailable(hold: Hold | string, what: string, cause?: unknown): OciError {
  const did = typeof hold === 'string' ? hold : hold.did
  return new OciError('UNAVAILABLE', { message: `hold ${did}: ${what}`, cause })
}

/**
 * A hold's 507 (its disk is full, or what is left is kept for its owner) as DENIED: a
 * client must not retry what only the hold's operator can fix (clients retry 5xx and
 * UNAVAILABLE), and the message names the cause.
 */
export function holdStorageFull(hold: Hold | string, holdMessage: unknown): OciError {
  const did = typeof hold === 'string' ? hold : hold.did
  const detail = typeof holdMessage === 'string' && holdMessage !== '' ? holdMessage : ''
  return new OciError('DENIED', {
    message: `hold ${did} is out of storage (507 Insufficient Storage)${detail ? `: ${detail}` : ''}`,
    detail: { hold: did, reason: 'StorageFull' },
  })
}

/** A DID, or a hold URL as older profiles wrote it (normalized to its did:web). */
export function normalizeHoldRef(value: string): string | null {
  if (value.startsWith('did:')) return value
  if (/^https?:\/\//.test(value)) {
    try {
      return didWebFromUrl(value.replace(/\/+$/, ''))
    } catch {
      return null
    }
  }
  return null
}

export class HoldClient {
  readonly #ctx: AppViewServices
  readonly #holds: TtlCache<Hold>
  readonly aliases: BlobAliases

  constructor(ctx: AppViewServices) {
    this.#ctx = ctx
    // A moved hold is followed once its DID document is resolved again.
    this.#holds = new TtlCache<Hold>({
      ttlMs: ctx.config.identity.cache_ttl * 1000,
      maxEntries: 1000,
      counter: ctx.metrics.cacheCounter('hold_endpoint'),
    })
    this.aliases = new BlobAliases(ctx.db)
  }

  /** The hold's endpoint from its DID document: `#atcr_hold`, else `#atproto_pds`. */
  async resolve(did: string): Promise<Hold> {
    return this.#holds.getOrLoad(did, async () => {
      let document: Awaited<ReturnType<AppViewServices['identity']['resolveDid']>>
      try {
        document = await this.#ctx.identity.resolveDid(did)
      } catch (error) {
        if (error instanceof IdentityError && error.code !== 'IdentityUnavailable') {
          throw new OciError('UNAVAILABLE', {
            message: `hold ${did} cannot be resolved: ${error.message}`,
            cause: error,
          })
        }
        throw holdUnavailable(did, 'its DID document could not be fetched', error)
      }
      const endpoint =
        getServiceEndpoint(document.document, 'atcr_hold') ??
        getServiceEndpoint(document.document, 'atproto_pds')
      if (!endpoint) throw holdUnavailable(did, 'its DID document names no #atcr_hold service')
      return { did, endpoint }
    })
  }

  /** Forgets a hold's endpoint (its identity changed: it may have moved). */
  forget(did: string): void {
    this.#holds.delete(did)
  }

  /** `Authorization` for a call made on behalf of `caller`, or none for anonymous calls. */
  async authorization(hold: Hold, caller: HoldCaller, lxm: string): Promise<string | undefined> {
    if (caller === null) return undefined
    try {
      return `Bearer ${await this.#ctx.sessions.serviceToken(caller, hold.did, lxm)}`
    } catch (error) {
      if (error instanceof NoSessionError) throw error
      if (error instanceof OciError) throw error
      throw new OciError('UNAVAILABLE', {
        message: `your PDS did not issue a service token for ${hold.did}: ${(error as Error).message}`,
        cause: error,
      })
    }
  }

  /** A procedure (POST, JSON in and out) called on behalf of `caller`. */
  async procedure<T>(hold: Hold, nsid: string, input: unknown, caller: HoldCaller): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    const auth = await this.authorization(hold, caller, nsid)
    if (auth) headers.authorization = auth
    return this.#json<T>(nsid, hold, xrpcUrl(hold.endpoint, nsid, {}), {
      method: 'POST',
      headers,
      body: JSON.stringify(input),
    })
  }

  /**
   * com.atproto.sync.getBlob for an OCI digest, redirects NOT followed: the answer is a
   * 307 to a presigned URL, the bytes (200/206), or an error status, as the hold gave it.
   * A sha512 digest is asked for under the digest the blob was stored with (see BlobAliases).
   * The call timeout covers the answer's headers only: a large blob to a slow client may
   * take much longer to stream (a stalled hold is cut by the agent's body timeout).
   */
  async getBlob(
    hold: Hold,
    digest: string,
    options: { method: 'GET' | 'HEAD'; caller: HoldCaller; range?: string },
  ): Promise<Response> {
    const headers: Record<string, string> = {}
    const auth = await this.authorization(hold, options.caller, 'com.atproto.sync.getBlob')
    if (auth) headers.authorization = auth
    if (options.range) headers.range = options.range
    const stored = await this.aliases.storedDigest(hold.did, digest)
    const url = xrpcUrl(hold.endpoint, 'com.atproto.sync.getBlob', { did: hold.did, cid: stored })
    return this.#fetchBlob(hold, url, options.method, headers, 'getBlob failed')
  }

  /**
   * Reads what a hold's getBlob redirect points at, for a client that may not be sent
   * there: through the guarded fetch (whose address rules refuse what the AppView must not
   * contact either), redirects not followed, with the range asked for.
   */
  async readRedirect(
    hold: Hold,
    location: URL,
    options: { method: 'GET' | 'HEAD'; range?: string },
  ): Promise<Response> {
    const headers: Record<string, string> = options.range ? { range: options.range } : {}
    return this.#fetchBlob(hold, location, options.method, headers, 'its redirect failed')
  }

  async #fetchBlob(
    hold: Hold,
    url: string | URL,
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    failure: string,
  ): Promise<Response> {
    const abort = new AbortController()
    const timer = setTimeout(
      () => abort.abort(new Error('the hold did not answer in time')),
      CALL_TIMEOUT_MS,
    )
    try {
      return await this.#ctx.fetch(url, {
        method,
        headers,
        redirect: 'manual',
        signal: abort.signal,
      })
    } catch (error) {
      throw holdUnavailable(hold, failure, error)
    } finally {
      clearTimeout(timer)
    }
  }

  /** Whether the hold stores the blob (a HEAD on getBlob). */
  async hasBlob(hold: Hold, digest: string, caller: HoldCaller): Promise<boolean> {
    const response = await this.getBlob(hold, digest, { method: 'HEAD', caller })
    await response.body?.cancel()
    if (response.ok || (response.status >= 300 && response.status < 400)) return true
    if (response.status === 404 || response.status === 400) return false
    if (response.status === 401 || response.status === 403) {
      throw new OciError('DENIED', {
        message: `hold ${hold.did} refused to say whether it has ${digest} (status ${response.status})`,
      })
    }
    throw holdUnavailable(hold, `getBlob HEAD answered ${response.status}`)
  }

  /** Reads a stored blob back (following the hold's redirect) and hashes it. */
  async digestOfStored(
    hold: Hold,
    digest: string,
    algorithm: DigestAlgorithm,
    caller: HoldCaller,
  ): Promise<string> {
    let response = await this.getBlob(hold, digest, { method: 'GET', caller })
    const location = response.headers.get('location')
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel()
      response = await this.#ctx.fetch(new URL(location, hold.endpoint), {
        signal: AbortSignal.timeout(10 * CALL_TIMEOUT_MS),
      })
    }
    if (response.status !== 200 || !response.body) {
      await response.body?.cancel()
      throw holdUnavailable(hold, `reading ${digest} back answered ${response.status}`)
    }
    const digester = createDigester(algorithm)
    for await (const chunk of response.body) digester.update(chunk)
    return digester.digest()
  }

  /** A raw request (for part uploads to the URL the hold named). */
  async send(url: string, init: RequestInit): Promise<Response> {
    return this.#ctx.fetch(url, { ...init, redirect: 'manual' })
  }

  /** A raw request whose body is streamed as it arrives (a part passed on). */
  async upload(url: string, init: StreamUploadInit): Promise<Response> {
    return this.#ctx.fetch.upload(url, init)
  }

  async #json<T>(
    nsid: string,
    hold: Hold,
    url: URL,
    init: { method: string; headers: Record<string, string>; body?: string },
  ): Promise<T> {
    let answer: { status: number; text: string }
    try {
      answer = await this.#ctx.fetch.request(url, {
        ...init,
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
        maxBytes: MAX_JSON_RESPONSE,
      })
    } catch (error) {
      throw holdUnavailable(hold, `${nsid} failed`, error)
    }
    return parseXrpcAnswer<T>(nsid, hold, answer.status, answer.text)
  }
}

/** The JSON body of a successful XRPC answer; throws HoldXrpcError for an error answer. */
export async function readXrpcJson<T>(nsid: string, hold: Hold, response: Response): Promise<T> {
  let text = ''
  try {
    text = await readBoundedText(response, MAX_JSON_RESPONSE)
  } catch (error) {
    // An error status without a readable body is still that error.
    if (response.ok) throw holdUnavailable(hold, `${nsid} returned malformed JSON`, error)
  }
  return parseXrpcAnswer<T>(nsid, hold, response.status, text)
}

function parseXrpcAnswer<T>(nsid: string, hold: Hold, status: number, text: string): T {
  const ok = status >= 200 && status < 300
  let body: unknown
  try {
    body = text === '' ? {} : JSON.parse(text)
  } catch (error) {
    if (status === 507) throw holdStorageFull(hold, undefined)
    if (!ok) throw new HoldXrpcError(nsid, status, 'Unknown', 'no error body')
    throw holdUnavailable(hold, `${nsid} returned malformed JSON`, error)
  }
  if (!ok) {
    const { error, message } = (body ?? {}) as { error?: unknown; message?: unknown }
    if (status === 507) throw holdStorageFull(hold, message)
    throw new HoldXrpcError(
      nsid,
      status,
      typeof error === 'string' ? error : 'Unknown',
      typeof message === 'string' ? message : '',
    )
  }
  return body as T
}
