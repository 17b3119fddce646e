// Blob upload sessions of the distribution API, mapped onto the hold's multipart upload.
//
// A session lives in this process's memory: the hold's uploadId, the parts sent so far,
// the hash of every byte received (hashed while streaming, never re-read) and at most one
// part's worth of bytes not yet sent. A restart of the AppView loses sessions in flight:
// clients start their upload again, and the hold's upload expiry removes the orphaned
// parts. Each full part goes to the hold as soon as it is complete: getPartUploadUrl, then
// a PUT of the bytes to the URL it names (a presigned storage URL, or the hold's own
// io.atcr.hold.uploadPart, which needs the caller's service token).
import { createHash, type Hash, randomUUID } from 'node:crypto'
import { NSID } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import { type DigestAlgorithm, DigestMismatchError, OciError } from '@atcr/core/oci'
import { NoSessionError } from '../auth/types.ts'
import {
  type Hold,
  type HoldClient,
  HoldXrpcError,
  holdUnavailable,
  readXrpcJson,
} from '../holds/hold-client.ts'

export interface UploadSession {
  readonly id: string
  /** The image name the session was opened under (it is used only under that name). */
  readonly name: string
  readonly callerDid: string
  readonly hold: Hold
  /** Bytes received so far. */
  offset: number
  startedAt: number
  lastUsedAt: number
}

interface SessionState extends UploadSession {
  holdUploadId: string | null
  parts: { partNumber: number; etag: string }[]
  hashes: Partial<Record<DigestAlgorithm, Hash>>
  pending: Buffer[]
  pendingBytes: number
  busy: boolean
  /** The digest announced when the upload began (monolithic uploads), if any. */
  expectedDigest: string | undefined
}

export interface UploadSessionsOptions {
  holds: HoldClient
  /** Bytes per part sent to the hold; one part per session is held in memory. */
  partSize: number
  logger: Logger
  /** Sessions untouched for this long are dropped (and aborted on the hold). */
  idleTimeoutMs?: number
}

const DEFAULT_IDLE_MS = 60 * 60_000
const SWEEP_EVERY_MS = 60_000
// The hold wants a digest when an upload begins, before a streamed upload's digest can be
// known; it verifies the digest given at completion. This stands in until then.
const PROVISIONAL_DIGEST = `sha256:${createHash('sha256').digest('hex')}`

function uploadUnknown(): OciError {
  return new OciError('BLOB_UPLOAD_UNKNOWN', {
    message: 'no such upload: it finished, was cancelled, expired, or the registry restarted',
  })
}

export class UploadSessions {
  readonly #holds: HoldClient
  readonly #partSize: number
  readonly #logger: Logger
  readonly #idleMs: number
  readonly #sessions = new Map<string, SessionState>()
  readonly #sweeper: NodeJS.Timeout

  constructor(options: UploadSessionsOptions) {
    this.#holds = options.holds
    this.#partSize = options.partSize
    this.#logger = options.logger
    this.#idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_MS
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_EVERY_MS)
    this.#sweeper.unref()
  }

  get size(): number {
    return this.#sessions.size
  }

  has(id: string): boolean {
    return this.#sessions.has(id)
  }

  open(input: {
    name: string
    callerDid: string
    hold: Hold
    expectedDigest?: string
    algorithm?: DigestAlgorithm
  }): UploadSession {
    const now = Date.now()
    const hashes: SessionState['hashes'] = { sha256: createHash('sha256') }
    // sha512 is hashed only when announced up front; a streamed upload finished with a
    // sha512 digest is verified by the hold alone.
    if (input.algorithm === 'sha512') hashes.sha512 = createHash('sha512')
    const session: SessionState = {
      id: randomUUID(),
      name: input.name,
      callerDid: input.callerDid,
      hold: input.hold,
      offset: 0,
      startedAt: now,
      lastUsedAt: now,
      holdUploadId: null,
      parts: [],
      hashes,
      pending: [],
      pendingBytes: 0,
      busy: false,
      expectedDigest: input.expectedDigest,
    }
    this.#sessions.set(session.id, session)
    return session
  }

  /** The caller's session under this name; BLOB_UPLOAD_UNKNOWN for anything else. */
  get(id: string, name: string, callerDid: string | null): UploadSession {
    const session = this.#sessions.get(id)
    if (!session || session.name !== name || session.callerDid !== callerDid) {
      throw uploadUnknown()
    }
    return session
  }

  /**
   * Appends a request body at `start` (when the client said where it belongs). Bytes are
   * hashed as they arrive and sent to the hold part by part; the request is not read
   * further while a part is on its way (backpressure instead of buffering).
   */
  async append(
    handle: UploadSession,
    body: AsyncIterable<Buffer>,
    range?: { start: number; end: number },
  ): Promise<void> {
    const session = this.#state(handle)
    if (session.busy) {
      throw new OciError('RANGE_INVALID', {
        message: 'another request is writing to this upload',
        status: 416,
      })
    }
    if (range && range.start !== session.offset) {
      throw new OciError('RANGE_INVALID', {
        message: `the chunk starts at ${range.start}, but ${session.offset} bytes were received`,
        status: 416,
      })
    }
    session.busy = true
    const before = session.offset
    try {
      for await (const chunk of body) {
        for (const hash of Object.values(session.hashes)) hash.update(chunk)
        session.offset += chunk.byteLength
        session.pending.push(chunk)
        session.pendingBytes += chunk.byteLength
        while (session.pendingBytes >= this.#partSize) await this.#sendFullPart(session)
      }
      if (range && session.offset - before !== range.end - range.start + 1) {
        throw new OciError('RANGE_INVALID', {
          message: `Content-Range announced ${range.end - range.start + 1} bytes, ${session.offset - before} arrived`,
          status: 416,
        })
      }
    } catch (error) {
      // The hash has seen bytes that may never reach the hold: the session cannot go on.
      await this.abort(session)
      throw error
    } finally {
      session.busy = false
      session.lastUsedAt = Date.now()
    }
  }

  /**
   * Sends what is left, checks the digest of everything received against `digest` and
   * asks the hold to complete the blob. The session ends either way.
   */
  async complete(handle: UploadSession, digest: string, algorithm: DigestAlgorithm): Promise<void> {
    const session = this.#state(handle)
    if (session.busy) {
      throw new OciError('RANGE_INVALID', {
        message: 'another request is writing to this upload',
        status: 416,
      })
    }
    session.busy = true
    try {
      // Holds take sha256 digests only (the hold API's digest fields are 128 characters at
      // most): every blob is completed under its sha256, which is always hashed here.
      const sha256 = `sha256:${session.hashes.sha256!.copy().digest('hex')}`
      const announced = session.hashes[algorithm]
      if (announced) {
        const actual =
          algorithm === 'sha256' ? sha256 : `${algorithm}:${announced.copy().digest('hex')}`
        if (actual !== digest) throw new DigestMismatchError(digest, actual)
      }
      session.expectedDigest = sha256
      // Every part but the last is full; the last may be short, or empty for an empty blob.
      if (session.pendingBytes > 0 || session.parts.length === 0) await this.#sendPart(session)
      const uploadId = await this.#holdUpload(session)
      try {
        await this.#holds.procedure(
          session.hold,
          NSID.holdCompleteUpload,
          { uploadId, digest: sha256, parts: session.parts },
          session.callerDid,
        )
      } catch (error) {
        if (error instanceof HoldXrpcError && error.error === 'InvalidDigest') {
          session.holdUploadId = null // the hold discarded it
          throw new OciError('DIGEST_INVALID', {
            message: `the hold found the uploaded content does not match ${sha256}: ${error.message}`,
          })
        }
        throw this.#holdError(session, 'completeUpload', error)
      }
      session.holdUploadId = null
      if (digest !== sha256) {
        if (!announced) {
          // Not hashed while streaming (the digest was named only now): read it back.
          const actual = await this.#holds.digestOfStored(
            session.hold,
            sha256,
            algorithm,
            session.callerDid,
          )
          // The blob stays on the hold under its sha256, unreferenced: its GC reclaims it.
          if (actual !== digest) throw new DigestMismatchError(digest, actual)
        }
        await this.#holds.aliases.record(session.hold.did, digest, sha256)
      }
    } catch (error) {
      await this.abort(session)
      throw error
    } finally {
      session.busy = false
      this.#sessions.delete(session.id)
    }
  }

  /** Ends a session and abandons its upload on the hold (best effort). */
  async abort(handle: UploadSession): Promise<void> {
    const session = this.#sessions.get(handle.id)
    this.#sessions.delete(handle.id)
    if (!session) return
    session.pending = []
    session.pendingBytes = 0
    const uploadId = session.holdUploadId
    session.holdUploadId = null
    if (uploadId === null) return
    try {
      await this.#holds.procedure(
        session.hold,
        NSID.holdAbortUpload,
        { uploadId },
        session.callerDid,
      )
    } catch (error) {
      // The hold's upload expiry removes what is left.
      this.#logger.warn({ err: error, hold: session.hold.did }, 'aborting a hold upload failed')
    }
  }

  close(): void {
    clearInterval(this.#sweeper)
    this.#sessions.clear()
  }

  #state(handle: UploadSession): SessionState {
    const session = this.#sessions.get(handle.id)
    if (!session) throw uploadUnknown()
    return session
  }

  async #holdUpload(session: SessionState): Promise<string> {
    if (session.holdUploadId !== null) return session.holdUploadId
    try {
      const { uploadId } = await this.#holds.procedure<{ uploadId: string }>(
        session.hold,
        NSID.holdInitiateUpload,
        {
          digest: session.expectedDigest?.startsWith('sha256:')
            ? session.expectedDigest
            : PROVISIONAL_DIGEST,
        },
        session.callerDid,
      )
      if (typeof uploadId !== 'string' || uploadId === '') {
        throw holdUnavailable(session.hold, 'initiateUpload returned no uploadId')
      }
      session.holdUploadId = uploadId
      return uploadId
    } catch (error) {
      throw this.#holdError(session, 'initiateUpload', error)
    }
  }

  async #sendFullPart(session: SessionState): Promise<void> {
    const all = Buffer.concat(session.pending, session.pendingBytes)
    const part = all.subarray(0, this.#partSize)
    const rest = all.subarray(this.#partSize)
    // A copy, so that the remainder does not keep the whole part's buffer alive.
    session.pending = rest.byteLength > 0 ? [Buffer.from(rest)] : []
    session.pendingBytes = rest.byteLength
    await this.#put(session, part)
  }

  async #sendPart(session: SessionState): Promise<void> {
    const part = Buffer.concat(session.pending, session.pendingBytes)
    session.pending = []
    session.pendingBytes = 0
    await this.#put(session, part)
  }

  async #put(session: SessionState, bytes: Buffer): Promise<void> {
    const uploadId = await this.#holdUpload(session)
    const partNumber = session.parts.length + 1
    let target: { url: string; method?: string; headers?: unknown }
    try {
      target = await this.#holds.procedure(
        session.hold,
        NSID.holdGetPartUploadUrl,
        { uploadId, partNumber },
        session.callerDid,
      )
    } catch (error) {
      throw this.#holdError(session, 'getPartUploadUrl', error)
    }
    const headers = new Headers()
    if (typeof target.headers === 'object' && target.headers !== null) {
      for (const [key, value] of Object.entries(target.headers)) {
        if (typeof value === 'string') headers.set(key, value)
      }
    }
    let url: URL
    try {
      url = new URL(target.url)
    } catch {
      throw holdUnavailable(session.hold, `getPartUploadUrl named no usable URL`)
    }
    // The hold's own uploadPart needs the caller's service token; a presigned storage URL
    // carries its authorization in the URL and must not be sent one.
    const throughHold = url.pathname === `/xrpc/${NSID.holdUploadPart}`
    if (throughHold) {
      if (!headers.has('x-upload-id')) headers.set('x-upload-id', uploadId)
      if (!headers.has('x-part-number')) headers.set('x-part-number', String(partNumber))
      const auth = await this.#holds.authorization(
        session.hold,
        session.callerDid,
        NSID.holdUploadPart,
      )
      if (auth) headers.set('authorization', auth)
    }
    headers.set('content-length', String(bytes.byteLength))
    let response: Response
    try {
      response = await this.#holds.send(url.href, {
        method: target.method ?? 'PUT',
        headers,
        body: bytes,
      })
    } catch (error) {
      throw holdUnavailable(session.hold, `sending part ${partNumber} failed`, error)
    }
    let etag: string | null = null
    if (throughHold) {
      try {
        etag =
          (await readXrpcJson<{ etag?: string }>(NSID.holdUploadPart, session.hold, response))
            .etag ?? null
      } catch (error) {
        throw this.#holdError(session, 'uploadPart', error)
      }
    } else {
      await response.body?.cancel()
      if (!response.ok) {
        throw holdUnavailable(
          session.hold,
          `storage refused part ${partNumber} (${response.status})`,
        )
      }
      etag = response.headers.get('etag')
    }
    if (!etag) throw holdUnavailable(session.hold, `part ${partNumber} got no ETag`)
    session.parts.push({ partNumber, etag })
  }

  #holdError(session: SessionState, what: string, error: unknown): Error {
    if (error instanceof OciError || error instanceof NoSessionError) return error
    if (error instanceof HoldXrpcError) {
      if (error.status === 401 || error.status === 403) {
        return new OciError('DENIED', {
          message: `hold ${session.hold.did} refused ${what}: ${error.error} ${error.message}`,
          cause: error,
        })
      }
      if (error.error === 'InvalidUploadId') return uploadUnknown()
      if (error.status === 413) {
        return new OciError('DENIED', {
          message: `hold ${session.hold.did} refused the blob: ${error.message}`,
          cause: error,
        })
      }
    }
    const reason =
      error instanceof HoldXrpcError ? `: ${error.status} ${error.error} ${error.message}` : ''
    return holdUnavailable(session.hold, `${what} failed${reason}`, error)
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#idleMs
    for (const session of this.#sessions.values()) {
      if (!session.busy && session.lastUsedAt < cutoff) {
        void this.abort(session)
      }
    }
  }
}
