// Blob upload sessions of the distribution API, mapped onto the hold's multipart upload.
//
// A session lives in this process's memory: the hold's uploadId, the parts sent so far,
// the hash of every byte received (hashed while streaming, never re-read) and one part
// buffer (registry.upload_part_size bytes at most) holding the part being received. A
// restart of the AppView loses sessions in flight: clients start their upload again, and
// the hold's upload expiry removes the orphaned parts.
//
// A part goes to the hold while it arrives: once a request is known to fill the current
// part (by its Content-Length, or, for a body of unknown length, once a quarter of a part
// has arrived), the part's PUT opens with the part's full length and the bytes are copied
// into the part buffer and written to the hold together, so receiving and sending overlap.
// The buffer keeps them in case the request ends first: the half-sent part is then
// abandoned and sent again, whole, later.
import { createHash, type Hash, randomUUID } from 'node:crypto'
import { NSID } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import { type DigestAlgorithm, DigestMismatchError, OciError } from '@atcr/core/oci'
import { NoSessionError } from '../auth/types.ts'
import { type Hold, type HoldClient, HoldXrpcError, holdUnavailable } from '../holds/hold-client.ts'
import { type PartTarget, StreamedPart, sendPart } from './part-upload.ts'

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
  /** The part being received (allocated on the first byte, reused for every part). */
  partBuffer: Buffer | null
  /** Bytes of the current part in partBuffer. */
  partFill: number
  /** The current part's PUT, when it is being streamed to the hold. */
  streaming: StreamedPart | null
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
      partBuffer: null,
      partFill: 0,
      streaming: null,
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
   * hashed as they arrive and go to the hold part by part; the request is not read
   * further while the hold is slower (backpressure instead of buffering). `length` is the
   * request's Content-Length, when it has one.
   */
  async append(
    handle: UploadSession,
    body: AsyncIterable<Buffer>,
    options: { range?: { start: number; end: number }; length?: number } = {},
  ): Promise<void> {
    const session = this.#state(handle)
    const { range, length } = options
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
        const remaining = length === undefined ? undefined : length - (session.offset - before)
        await this.#take(session, chunk, remaining)
      }
      // A part still open was not filled by this request: abandon its PUT (the bytes stay
      // in the part buffer for the next request or the last part).
      await this.#stopStreaming(session)
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

  /** Copies a chunk into the part buffer, streaming or sending parts as they fill. */
  async #take(session: SessionState, chunk: Buffer, remaining: number | undefined) {
    let position = 0
    while (position < chunk.byteLength) {
      session.partBuffer ??= Buffer.allocUnsafeSlow(this.#partSize)
      const take = Math.min(this.#partSize - session.partFill, chunk.byteLength - position)
      const start = session.partFill
      chunk.copy(session.partBuffer, start, position, position + take)
      session.partFill += take
      position += take
      const rest = remaining === undefined ? undefined : remaining + (chunk.byteLength - position)
      if (session.streaming) {
        await session.streaming.write(session.partBuffer.subarray(start, session.partFill))
      } else if (this.#worthStreaming(session, rest)) {
        session.streaming = await this.#openStream(session)
        await session.streaming.write(session.partBuffer.subarray(0, session.partFill))
      }
      if (session.partFill === this.#partSize) await this.#partDone(session)
    }
  }

  /**
   * Whether to open the current part's PUT now: when this request will fill it (known
   * length), or, not knowing, once a quarter of a part has arrived (smaller blobs go in one
   * PUT at the end; a larger last part may be sent twice).
   */
  #worthStreaming(session: SessionState, rest: number | undefined): boolean {
    if (session.partFill === this.#partSize) return false
    if (rest !== undefined) return session.partFill + rest >= this.#partSize
    return session.partFill >= this.#partSize / 4
  }

  async #openStream(session: SessionState): Promise<StreamedPart> {
    const target = await this.#partTarget(session)
    try {
      return await StreamedPart.open(this.#holds, target, this.#partSize)
    } catch (error) {
      throw this.#holdError(session, 'getPartUploadUrl', error)
    }
  }

  /** The current part is full: finish its PUT, or send it whole. */
  async #partDone(session: SessionState): Promise<void> {
    const streaming = session.streaming
    session.streaming = null
    if (streaming) {
      let etag: string
      try {
        etag = await streaming.finish()
      } catch (error) {
        throw this.#holdError(session, 'uploadPart', error)
      }
      session.parts.push({ partNumber: streaming.target.partNumber, etag })
    } else {
      await this.#sendBuffered(session)
    }
    session.partFill = 0
  }

  async #stopStreaming(session: SessionState): Promise<void> {
    const streaming = session.streaming
    session.streaming = null
    await streaming?.abort()
  }

  /** Sends the part buffer's bytes as one part. */
  async #sendBuffered(session: SessionState): Promise<void> {
    const bytes = (session.partBuffer ?? Buffer.alloc(0)).subarray(0, session.partFill)
    const target = await this.#partTarget(session)
    let etag: string
    try {
      etag = await sendPart(this.#holds, target, bytes)
    } catch (error) {
      throw this.#holdError(session, 'uploadPart', error)
    }
    session.parts.push({ partNumber: target.partNumber, etag })
  }

  async #partTarget(session: SessionState): Promise<PartTarget> {
    const uploadId = await this.#holdUpload(session)
    return {
      hold: session.hold,
      callerDid: session.callerDid,
      uploadId,
      partNumber: session.parts.length + 1,
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
      if (session.partFill > 0 || session.parts.length === 0) await this.#sendBuffered(session)
      session.partFill = 0
      session.partBuffer = null
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
    await this.#stopStreaming(session)
    session.partBuffer = null
    session.partFill = 0
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
