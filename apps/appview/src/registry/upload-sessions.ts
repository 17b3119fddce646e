// Blob upload sessions of the distribution API, mapped onto the hold's multipart upload.
//
// Nothing of a session waits in memory between requests. Its state is a row in the
// database (upload-store.ts): the hold's uploadId, the parts the hold stored, the bytes
// received. Its bytes are in those parts, and the part being received in a spill file,
// `<data_dir>/uploads/<session id>` (at most one part long). So a session survives a
// restart, and any AppView sharing the database and data_dir can continue it.
//
// A request writing to a session holds a lease on it in the database (renewed while the
// request lasts, lost if its process dies): two requests never write one session at once,
// in one process or across several. Whatever a request recorded is consistent (bytes in
// parts or in the spill file); a process that died mid-request may have left more in the
// spill file than it recorded, and the next request cuts the file back to the record.
//
// A part goes to the hold while it arrives: once a request is known to fill the current
// part (by its Content-Length, or, for a body of unknown length, once a quarter of a part
// has arrived), the part's PUT opens with the part's full length and the bytes are written
// to it and to the spill file together. If the request ends first, the PUT is abandoned;
// the bytes are in the spill file for the next request or the last part.
//
// The bytes are hashed as they arrive, in this process's memory (a hash state cannot be
// stored): when this process saw every byte of a session, it checks the client's digest
// before completing; otherwise the hold's check at completion is the only one.
import { createHash, type Hash, randomUUID } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { type FileHandle, open, readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { HOLD_UPLOAD_BLOB, NSID } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import { release } from '@atcr/core/memory'
import { type DigestAlgorithm, DigestMismatchError, OciError } from '@atcr/core/oci'
import { NoSessionError } from '../auth/types.ts'
import type { AppViewDatabase } from '../db/index.ts'
import { type Hold, type HoldClient, HoldXrpcError, holdUnavailable } from '../holds/hold-client.ts'
import {
  type PartTarget,
  StreamedPart,
  sendFilePart,
  sendWholeBlob,
  WHOLE_BLOB_MAX,
} from './part-upload.ts'
import { type UploadPart, type UploadRow, UploadStore } from './upload-store.ts'

export interface UploadSession {
  readonly id: string
  /** The image name the session was opened under (it is used only under that name). */
  readonly name: string
  readonly callerDid: string
  readonly hold: Hold
  /** Bytes received so far. */
  offset: number
}

export interface UploadSessionsOptions {
  holds: HoldClient
  db: AppViewDatabase
  /** The AppView's data_dir: spill files go to its `uploads/`. */
  dataDir: string
  /** Bytes per part sent to the hold. */
  partSize: number
  /** Open sessions one account may have. */
  maxPerAccount: number
  /** Sessions without a request for this long expire (aborted on the hold). */
  idleTimeoutMs: number
  logger: Logger
  /** Tests: the clock. */
  now?: () => number
}

/** How long a request's lease on its session lasts unless renewed. */
export const LEASE_MS = 30_000
const RENEW_EVERY_MS = LEASE_MS / 3
const SWEEP_MIN_MS = 250
const SWEEP_MAX_MS = 60_000
const SWEEP_BATCH = 100

// Request bytes are taken in batches of up to this size: each batch is one write to the
// spill file, one write to the part's PUT and one hash update, instead of one per
// 64 KiB socket read (per-chunk awaits left the AppView idle between them). A batch is
// the socket's chunks as they came: joining them into one buffer cost a copy of every
// byte and a fresh allocation per batch (a sixth of the AppView's CPU in a 256 MiB PUT).
const BATCH_BYTES = 1024 * 1024

/** Chunks of a request body, in order, and how many bytes they hold. */
interface Batch {
  chunks: Buffer[]
  bytes: number
}

/** The request body's chunks in batches of about `size` bytes (one batch in memory). */
async function* batches(body: AsyncIterable<Buffer>, size: number): AsyncIterable<Batch> {
  let pending: Batch = { chunks: [], bytes: 0 }
  for await (const chunk of body) {
    pending.chunks.push(chunk)
    pending.bytes += chunk.byteLength
    if (pending.bytes >= size) {
      yield pending
      pending = { chunks: [], bytes: 0 }
    }
  }
  if (pending.bytes > 0) yield pending
}

/** Takes the first `bytes` bytes off a batch (a chunk straddling the cut is sliced). */
function takeFrom(batch: Batch, bytes: number): Buffer[] {
  if (bytes === batch.bytes) {
    const all = batch.chunks
    batch.chunks = []
    batch.bytes = 0
    return all
  }
  const taken: Buffer[] = []
  let left = bytes
  while (left > 0) {
    const chunk = batch.chunks[0]!
    if (chunk.byteLength <= left) {
      taken.push(chunk)
      batch.chunks.shift()
      left -= chunk.byteLength
    } else {
      taken.push(chunk.subarray(0, left))
      batch.chunks[0] = chunk.subarray(left)
      left = 0
    }
  }
  batch.bytes -= bytes
  return taken
}

/** Writes the pieces one after another into the file at `position`. */
async function writeAt(file: FileHandle, pieces: Buffer[], position: number): Promise<void> {
  let { bytesWritten } = await file.writev(pieces, position)
  // A short write (rare on a regular file): the rest goes piece by piece.
  for (const piece of pieces) {
    if (bytesWritten >= piece.byteLength) {
      bytesWritten -= piece.byteLength
      position += piece.byteLength
      continue
    }
    let done = bytesWritten
    bytesWritten = 0
    while (done < piece.byteLength) {
      const written = await file.write(piece, done, piece.byteLength - done, position + done)
      done += written.bytesWritten
    }
    position += piece.byteLength
  }
}

/** The hashes of a session's bytes, from its first byte up to `covered`. */
interface HashState {
  covered: number
  sha256: Hash
  sha512?: Hash
}

/** One request's hold on a session: its lease (renewed on a timer) and where it stands. */
interface Writer {
  readonly session: UploadSession
  readonly owner: string
  readonly hold: Hold
  row: UploadRow
  file: FileHandle | null
  /** Bytes of the current part in the spill file. */
  spill: number
  received: number
  sent: number
  partNumber: number
  streaming: StreamedPart | null
  /** The current part's PUT failed: the part goes from the spill file once full. */
  streamFailed: boolean
  /**
   * Set while the current part goes only to its PUT (this request is known to fill it):
   * the spill file holds the part's first `onDisk` bytes, and nothing after them.
   */
  streamOnly: { onDisk: number } | null
  hash: HashState | null
  lost: boolean
  timer: NodeJS.Timeout
}

function uploadUnknown(): OciError {
  return new OciError('BLOB_UPLOAD_UNKNOWN', {
    message: 'no such upload: it finished, was cancelled, or expired',
  })
}

function busy(): OciError {
  return new OciError('RANGE_INVALID', {
    message: 'another request is writing to this upload',
    status: 416,
  })
}

function leaseLost(): OciError {
  return new OciError('RANGE_INVALID', {
    message: 'this request lost its hold on the upload (it stalled); retry from the current offset',
    status: 416,
  })
}

export class UploadSessions {
  readonly #holds: HoldClient
  readonly #store: UploadStore
  readonly #dir: string
  readonly #partSize: number
  readonly #maxPerAccount: number
  readonly #idleMs: number
  readonly #logger: Logger
  readonly #now: () => number
  readonly #hashes = new Map<string, HashState>()
  readonly #sweeper: NodeJS.Timeout
  #sweeping: Promise<void> = Promise.resolve()
  #closed = false

  constructor(options: UploadSessionsOptions) {
    this.#holds = options.holds
    this.#store = new UploadStore(options.db)
    this.#dir = join(options.dataDir, 'uploads')
    this.#partSize = options.partSize
    this.#maxPerAccount = options.maxPerAccount
    this.#idleMs = Math.max(options.idleTimeoutMs, 1)
    this.#logger = options.logger
    this.#now = options.now ?? Date.now
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 })
    const every = Math.min(Math.max(this.#idleMs / 4, SWEEP_MIN_MS), SWEEP_MAX_MS)
    this.#sweeper = setInterval(() => {
      this.#sweeping = this.#sweeping.then(() => this.sweep())
    }, every)
    this.#sweeper.unref()
  }

  /** How many sessions are open now, on every instance sharing the database (metrics). */
  async countOpen(): Promise<number> {
    const now = this.#now()
    return this.#store.countLive(now - this.#idleMs, now)
  }

  /** Opens a session; 429 TOOMANYREQUESTS when the account has its fill of open ones. */
  async open(input: {
    name: string
    callerDid: string
    hold: Hold
    expectedDigest?: string
  }): Promise<UploadSession> {
    const now = this.#now()
    const row: UploadRow = {
      id: randomUUID(),
      name: input.name,
      caller_did: input.callerDid,
      hold_did: input.hold.did,
      hold_endpoint: input.hold.endpoint,
      hold_upload_id: null,
      expected_digest: input.expectedDigest ?? null,
      received: 0,
      sent: 0,
      lease_owner: null,
      lease_until: 0,
      created_at: now,
      updated_at: now,
    }
    if (!(await this.#store.insert(row, this.#maxPerAccount, now - this.#idleMs))) {
      throw new OciError('TOOMANYREQUESTS', {
        message: `you have ${this.#maxPerAccount} blob uploads open, the most this registry allows: finish or cancel (DELETE) one, or wait for idle ones to expire`,
      })
    }
    return sessionOf(row)
  }

  /** The caller's session under this name; BLOB_UPLOAD_UNKNOWN for anything else. */
  async get(id: string, name: string, callerDid: string | null): Promise<UploadSession> {
    const row = await this.#store.get(id)
    if (!row || row.name !== name || row.caller_did !== callerDid) throw uploadUnknown()
    if (row.updated_at < this.#now() - this.#idleMs && row.lease_until < this.#now()) {
      await this.#expire(id)
      throw uploadUnknown()
    }
    return sessionOf(row)
  }

  /** Where a session stands now (for answers after a failed request), or null. */
  async find(id: string): Promise<UploadSession | null> {
    const row = await this.#store.get(id)
    return row ? sessionOf(row) : null
  }

  /**
   * Appends a request body at `start` (when the client said where it belongs), taking its
   * chunks over: each is freed once stored and sent (`release`). Bytes are hashed as they
   * arrive and go to the spill file and to the hold part by part; the request is not read
   * further while the disk or the hold is slower. `length` is the
   * request's Content-Length, when it has one; `digest` the blob's digest when the client
   * named it already (it goes to the hold when the hold's upload begins).
   */
  async append(
    handle: UploadSession,
    body: AsyncIterable<Buffer>,
    options: { range?: { start: number; end: number }; length?: number; digest?: string } = {},
  ): Promise<void> {
    const writer = await this.#begin(handle)
    const { range, length } = options
    try {
      if (range && range.start !== writer.received) {
        throw new OciError('RANGE_INVALID', {
          message: `the chunk starts at ${range.start}, but ${writer.received} bytes were received`,
          status: 416,
        })
      }
      const before = writer.received
      await this.#openSpill(writer)
      writer.hash = this.#hashFor(writer, options.digest)
      await this.#receive(writer, batches(body, BATCH_BYTES), length, options.digest)
      if (range && writer.received - before !== range.end - range.start + 1) {
        throw new OciError('RANGE_INVALID', {
          message: `Content-Range announced ${range.end - range.start + 1} bytes, ${writer.received - before} arrived`,
          status: 416,
        })
      }
    } catch (error) {
      if (error instanceof OciError && error.code === 'BLOB_UPLOAD_UNKNOWN') {
        await this.#end(writer, { abortOnHold: false })
      }
      throw error
    } finally {
      await this.#finish(writer)
    }
  }

  /**
   * Sends what is left as the last part and asks the hold to complete the blob under
   * `digest`, checked here first when this process saw every byte. The session ends
   * either way.
   */
  async complete(handle: UploadSession, digest: string, algorithm: DigestAlgorithm): Promise<void> {
    const writer = await this.#begin(handle)
    let abortOnHold = true
    try {
      const hash = this.#coveringHash(writer)
      const sha256 = hash ? `sha256:${hash.sha256.copy().digest('hex')}` : null
      const announced = hash?.[algorithm]
      if (announced) {
        const actual = `${algorithm}:${announced.copy().digest('hex')}`
        if (actual !== digest) throw new DigestMismatchError(digest, actual)
      }
      // Holds take sha256 digests only (the hold API's digest fields are 128 characters at
      // most): a sha512 blob is completed under its sha256, known only from the hash of
      // every byte.
      if (algorithm !== 'sha256' && sha256 === null) {
        throw new OciError('BLOB_UPLOAD_INVALID', {
          message: `this ${algorithm} upload was continued by another registry process or after a restart, which cannot check ${algorithm} digests; please upload the blob again`,
        })
      }
      const holdDigest = sha256 ?? digest

      await this.#openSpill(writer)
      // Every part but the last is full; the last may be short, or empty for an empty blob.
      const parts = await this.#store.parts(handle.id)
      if (!(await this.#storeWhole(writer, parts, holdDigest))) {
        if (writer.spill > 0 || parts.length === 0) {
          parts.push(await this.#sendSpill(writer, holdDigest))
        }
        const uploadId = await this.#holdUpload(writer, holdDigest)
        try {
          await this.#holds.procedure(
            writer.hold,
            NSID.holdCompleteUpload,
            {
              uploadId,
              digest: holdDigest,
              parts: parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
            },
            handle.callerDid,
          )
        } catch (error) {
          if (isInvalidDigest(error)) abortOnHold = false // the hold discarded it
          throw this.#completionError(writer.hold, holdDigest, 'completeUpload', error)
        }
      }
      abortOnHold = false
      if (digest !== holdDigest) {
        if (!announced) {
          // Not hashed while streaming (the digest was named only now): read it back.
          const actual = await this.#holds.digestOfStored(
            writer.hold,
            holdDigest,
            algorithm,
            handle.callerDid,
          )
          // The blob stays on the hold under its sha256, unreferenced: its GC reclaims it.
          if (actual !== digest) throw new DigestMismatchError(digest, actual)
        }
        await this.#holds.aliases.record(writer.hold.did, digest, holdDigest)
      }
      await this.#end(writer, { abortOnHold: false })
    } catch (error) {
      // A request that lost its lease leaves the session to the one that took it.
      if (!writer.lost) await this.#end(writer, { abortOnHold })
      throw error
    } finally {
      await this.#finish(writer)
    }
  }

  /** Ends a session and abandons its upload on the hold (best effort). */
  async abort(handle: UploadSession): Promise<void> {
    const writer = await this.#begin(handle)
    try {
      await this.#end(writer, { abortOnHold: true })
    } finally {
      await this.#finish(writer)
    }
  }

  close(): void {
    this.#closed = true
    clearInterval(this.#sweeper)
    this.#hashes.clear()
  }

  /**
   * Ends sessions idle past the timeout (each claimed in the database first, so that of
   * several processes sharing it exactly one ends a session), then removes spill files no
   * session owns and forgets hashes of sessions that ended elsewhere.
   */
  async sweep(): Promise<void> {
    try {
      const seen = new Set<string>()
      for (;;) {
        const now = this.#now()
        const ids = (await this.#store.idle(now - this.#idleMs, now, SWEEP_BATCH)).filter(
          (id) => !seen.has(id),
        )
        if (ids.length === 0 || this.#closed) break
        for (const id of ids) {
          seen.add(id)
          await this.#expire(id)
        }
      }
      await this.#sweepLeftovers()
    } catch (error) {
      this.#logger.warn({ err: error }, 'sweeping idle uploads failed')
    }
  }

  /** Ends an idle session if this process is the one to claim it. */
  async #expire(id: string): Promise<void> {
    const now = this.#now()
    const owner = `expire:${randomUUID()}`
    const row = await this.#store.claimIdle(id, owner, now, now + LEASE_MS, now - this.#idleMs)
    if (!row) return
    this.#logger.info({ upload: id, caller: row.caller_did }, 'upload expired')
    await this.#discard(row, true)
  }

  async #sweepLeftovers(): Promise<void> {
    const cutoff = this.#now() - this.#idleMs
    const names = await readdir(this.#dir)
    for (let i = 0; i < names.length; i += 500) {
      const batch = names.slice(i, i + 500)
      const live = await this.#store.existing(batch)
      for (const name of batch) {
        if (live.has(name)) continue
        const path = join(this.#dir, name)
        const info = await stat(path).catch(() => null)
        if (info && info.mtimeMs < cutoff) await unlink(path).catch(() => {})
      }
    }
    const known = [...this.#hashes.keys()]
    for (let i = 0; i < known.length; i += 500) {
      const batch = known.slice(i, i + 500)
      const live = await this.#store.existing(batch)
      for (const id of batch) if (!live.has(id)) this.#hashes.delete(id)
    }
  }

  /** Takes the session's lease: 416 while another request has it, unknown when gone. */
  async #begin(handle: UploadSession): Promise<Writer> {
    const now = this.#now()
    const owner = randomUUID()
    const result = await this.#store.lease(
      handle.id,
      owner,
      now,
      now + LEASE_MS,
      now - this.#idleMs,
    )
    if (result.state === 'busy') {
      handle.offset = result.row.received
      throw busy()
    }
    if (result.state === 'expired') {
      await this.#expire(handle.id)
      throw uploadUnknown()
    }
    if (result.state === 'unknown') throw uploadUnknown()
    const row = result.row
    const writer: Writer = {
      session: handle,
      owner,
      hold: { did: row.hold_did, endpoint: row.hold_endpoint },
      row,
      file: null,
      spill: row.received - row.sent,
      received: row.received,
      sent: row.sent,
      partNumber: 0,
      streaming: null,
      streamFailed: false,
      streamOnly: null,
      hash: null,
      lost: false,
      timer: setInterval(() => {
        const at = this.#now()
        this.#store.renew(handle.id, owner, at, at + LEASE_MS).then(
          (held) => {
            if (!held) writer.lost = true
          },
          (error: unknown) => this.#logger.warn({ err: error }, 'renewing an upload lease failed'),
        )
      }, RENEW_EVERY_MS),
    }
    writer.timer.unref()
    handle.offset = row.received
    return writer
  }

  /** Closes the spill file, records where the session stands and gives up the lease. */
  async #finish(writer: Writer): Promise<void> {
    clearInterval(writer.timer)
    await this.#stopStreaming(writer)
    if (writer.streamOnly) {
      // The request ended inside a part that was only being sent: what the spill file
      // does not have is not received.
      writer.received -= writer.spill - writer.streamOnly.onDisk
      writer.spill = writer.streamOnly.onDisk
      writer.streamOnly = null
      // The hash has seen bytes that are given back: it no longer covers the upload.
      writer.hash = null
      this.#hashes.delete(writer.session.id)
    }
    const file = writer.file
    writer.file = null
    try {
      if (file) {
        await file.datasync()
        await file.close()
      }
      if (writer.hash) writer.hash.covered = writer.received
      writer.session.offset = writer.received
      if (writer.received !== writer.row.received) {
        await this.#store.record(writer.session.id, writer.owner, { received: writer.received })
      }
      await this.#store.release(writer.session.id, writer.owner, this.#now())
    } catch (error) {
      this.#logger.warn({ err: error, upload: writer.session.id }, 'recording an upload failed')
    }
  }

  /** Opens the spill file, cut back to the bytes the database recorded. */
  async #openSpill(writer: Writer): Promise<void> {
    const path = this.#spillPath(writer.session.id)
    let file: FileHandle
    try {
      file = await open(path, 'r+')
    } catch {
      file = await open(path, 'w+', 0o600)
    }
    writer.file = file
    const { size } = await file.stat()
    if (size < writer.spill) {
      throw new OciError('BLOB_UPLOAD_INVALID', {
        message: `the upload lost bytes kept by the registry (${size} of ${writer.spill}); please upload the blob again`,
      })
    }
    if (size > writer.spill) await file.truncate(writer.spill)
    writer.partNumber = (await this.#store.parts(writer.session.id)).length
  }

  /** This process's hash of the session, when it saw every byte so far. */
  #hashFor(writer: Writer, digest: string | undefined): HashState | null {
    const id = writer.session.id
    const known = this.#hashes.get(id)
    if (known && known.covered === writer.received) return known
    this.#hashes.delete(id)
    if (writer.received !== 0) return null
    // A sha256 named before the first byte is checked by the hold as it completes the
    // blob (it hashes what it stores): hashing here too would only cost a core.
    const named = digest ?? writer.row.expected_digest
    if (named?.startsWith('sha256:')) return null
    const hash: HashState = { covered: 0, sha256: createHash('sha256') }
    // sha512 is hashed only when announced before the first byte; a streamed upload
    // finished with a sha512 digest is read back from the hold instead.
    if (named?.startsWith('sha512:')) hash.sha512 = createHash('sha512')
    this.#hashes.set(id, hash)
    return hash
  }

  #coveringHash(writer: Writer): HashState | null {
    const known = this.#hashes.get(writer.session.id)
    return known && known.covered === writer.received ? known : null
  }

  async #receive(
    writer: Writer,
    body: AsyncIterable<Batch>,
    length: number | undefined,
    digest: string | undefined,
  ): Promise<void> {
    // A full part left by a request whose send failed goes first.
    if (writer.spill >= this.#partSize) await this.#partFull(writer, digest)
    let arrived = 0
    for await (const batch of body) {
      arrived += batch.bytes
      while (batch.bytes > 0) {
        if (writer.lost) throw leaseLost()
        const take = Math.min(this.#partSize - writer.spill, batch.bytes)
        const piece = takeFrom(batch, take)
        const start = writer.spill
        let sent = true
        if (writer.streamOnly) await this.#streamOnly(writer, piece)
        else {
          const written = writeAt(writer.file!, piece, start)
          if (writer.streaming) [, sent] = await Promise.all([written, this.#stream(writer, piece)])
          else await written
        }
        if (writer.hash) {
          for (const chunk of piece) {
            writer.hash.sha256.update(chunk)
            writer.hash.sha512?.update(chunk)
          }
        }
        // Stored, sent and hashed: nothing needs the chunks any more.
        if (sent) for (const chunk of piece) release(chunk)
        writer.spill += take
        writer.received += take
        if (writer.hash) writer.hash.covered = writer.received
        const rest = length === undefined ? undefined : length - arrived + batch.bytes
        if (!writer.streaming && this.#worthStreaming(writer, rest)) {
          await this.#startStreaming(writer, digest)
          // Known to fill the part: its remaining bytes need no copy on disk.
          if (rest !== undefined) writer.streamOnly = { onDisk: writer.spill }
        }
        if (writer.spill === this.#partSize) await this.#partFull(writer, digest)
      }
    }
  }

  /**
   * Whether to open the current part's PUT now: when this request will fill it (known
   * length), or, not knowing, once a quarter of a part has arrived (smaller blobs go in one
   * PUT at the end; a larger last part may be sent twice).
   */
  #worthStreaming(writer: Writer, rest: number | undefined): boolean {
    if (writer.spill === this.#partSize || writer.streamFailed) return false
    if (rest !== undefined) return writer.spill + rest >= this.#partSize
    return writer.spill >= this.#partSize / 4
  }

  /**
   * Writes to the part's PUT. A PUT that fails is dropped, not the request: the bytes are
   * in the spill file, and the part goes from there once full. False when it failed (the
   * connection may still hold the chunks).
   */
  async #stream(writer: Writer, piece: Buffer[]): Promise<boolean> {
    try {
      await writer.streaming?.write(...piece)
      return true
    } catch (error) {
      this.#logger.warn({ err: error, upload: writer.session.id }, 'streaming a part failed')
      writer.streamFailed = true
      await this.#stopStreaming(writer)
      return false
    }
  }

  /**
   * Writes to the PUT of a part that is not kept on disk: a failure fails the request,
   * and `#finish` takes back what did not reach a stored part.
   */
  async #streamOnly(writer: Writer, piece: Buffer[]): Promise<void> {
    try {
      await writer.streaming!.write(...piece)
    } catch (error) {
      throw this.#holdError(writer.hold, 'uploadPart', error)
    }
  }

  /** Opens the part's PUT and sends it what the spill file has of the part so far. */
  async #startStreaming(writer: Writer, digest: string | undefined): Promise<void> {
    const target = await this.#partTarget(writer, digest)
    let part: StreamedPart
    try {
      part = await StreamedPart.open(this.#holds, target, this.#partSize)
    } catch (error) {
      throw this.#holdError(writer.hold, 'getPartUploadUrl', error)
    }
    writer.streaming = part
    await part.writeFile(writer.file!, writer.spill)
  }

  /** The current part is full: finish its PUT, or send it from the spill file. */
  async #partFull(writer: Writer, digest: string | undefined): Promise<void> {
    const streaming = writer.streaming
    writer.streaming = null
    let part: UploadPart
    if (streaming) {
      let etag: string
      try {
        etag = await streaming.finish()
      } catch (error) {
        throw this.#holdError(writer.hold, 'uploadPart', error)
      }
      part = { part_number: streaming.target.partNumber, etag, size: this.#partSize }
    } else {
      part = await this.#sendSpill(writer, digest)
    }
    const totals = { received: writer.received, sent: writer.sent + part.size }
    if (!(await this.#store.addPart(writer.session.id, writer.owner, part, totals))) {
      throw leaseLost()
    }
    writer.row.received = writer.received
    writer.sent = totals.sent
    writer.partNumber = part.part_number
    writer.spill = 0
    writer.streamFailed = false
    writer.streamOnly = null
    await writer.file!.truncate(0)
  }

  /**
   * A blob whose bytes are all in the spill file, none on the hold yet, and small enough
   * goes in one call; false when it does not qualify or the hold lacks the method.
   */
  async #storeWhole(writer: Writer, parts: UploadPart[], digest: string): Promise<boolean> {
    if (parts.length > 0 || writer.row.hold_upload_id !== null || writer.spill > WHOLE_BLOB_MAX) {
      return false
    }
    try {
      return await sendWholeBlob(
        this.#holds,
        { hold: writer.hold, callerDid: writer.session.callerDid, digest },
        writer.file!,
        writer.spill,
      )
    } catch (error) {
      throw this.#completionError(writer.hold, digest, HOLD_UPLOAD_BLOB, error)
    }
  }

  #completionError(hold: Hold, digest: string, what: string, error: unknown): Error {
    if (isInvalidDigest(error)) {
      return new OciError('DIGEST_INVALID', {
        message: `the hold found the uploaded content does not match ${digest}: ${(error as Error).message}`,
      })
    }
    return this.#holdError(hold, what, error)
  }

  /** Sends the spill file's bytes as the next part. */
  async #sendSpill(writer: Writer, digest: string | undefined): Promise<UploadPart> {
    const target = await this.#partTarget(writer, digest)
    try {
      const etag = await sendFilePart(this.#holds, target, writer.file!, writer.spill)
      return { part_number: target.partNumber, etag, size: writer.spill }
    } catch (error) {
      throw this.#holdError(writer.hold, 'uploadPart', error)
    }
  }

  async #stopStreaming(writer: Writer): Promise<void> {
    const streaming = writer.streaming
    writer.streaming = null
    await streaming?.abort()
  }

  async #partTarget(writer: Writer, digest: string | undefined): Promise<PartTarget> {
    const uploadId = await this.#holdUpload(writer, digest)
    return {
      hold: writer.hold,
      callerDid: writer.session.callerDid,
      uploadId,
      partNumber: writer.partNumber + 1,
    }
  }

  /**
   * The hold's upload, begun on the first part. It is given the blob's digest when the
   * client named one already; a streamed upload's digest is known only at its end, and
   * the hold is told it at completion.
   */
  async #holdUpload(writer: Writer, digest: string | undefined): Promise<string> {
    if (writer.row.hold_upload_id !== null) return writer.row.hold_upload_id
    const named = digest ?? writer.row.expected_digest
    const input = named?.startsWith('sha256:') ? { digest: named } : {}
    let uploadId: string
    try {
      const answer = await this.#holds.procedure<{ uploadId?: unknown }>(
        writer.hold,
        NSID.holdInitiateUpload,
        input,
        writer.session.callerDid,
      )
      if (typeof answer.uploadId !== 'string' || answer.uploadId === '') {
        throw holdUnavailable(writer.hold, 'initiateUpload returned no uploadId')
      }
      uploadId = answer.uploadId
    } catch (error) {
      throw this.#holdError(writer.hold, 'initiateUpload', error)
    }
    if (
      !(await this.#store.record(writer.session.id, writer.owner, { hold_upload_id: uploadId }))
    ) {
      throw leaseLost()
    }
    writer.row.hold_upload_id = uploadId
    return uploadId
  }

  /** Removes a session this writer holds (and its hold upload, unless told otherwise). */
  async #end(writer: Writer, options: { abortOnHold: boolean }): Promise<void> {
    await this.#stopStreaming(writer)
    await writer.file?.close().catch(() => {})
    writer.file = null
    await this.#discard(writer.row, options.abortOnHold)
  }

  /** Drops a session: the hold's upload (best effort), the spill file, the rows, the hash. */
  async #discard(row: UploadRow, abortOnHold: boolean): Promise<void> {
    const uploadId = row.hold_upload_id
    if (abortOnHold && uploadId !== null) {
      try {
        await this.#holds.procedure(
          { did: row.hold_did, endpoint: row.hold_endpoint },
          NSID.holdAbortUpload,
          { uploadId },
          row.caller_did,
        )
      } catch (error) {
        // The hold's upload expiry removes what is left.
        this.#logger.warn({ err: error, hold: row.hold_did }, 'aborting a hold upload failed')
      }
    }
    await unlink(this.#spillPath(row.id)).catch(() => {})
    await this.#store.delete(row.id)
    this.#hashes.delete(row.id)
  }

  #spillPath(id: string): string {
    // Session ids are UUIDs this class made; anything else never names a file.
    if (!/^[0-9a-f-]{36}$/.test(id)) throw uploadUnknown()
    return join(this.#dir, id)
  }

  #holdError(hold: Hold, what: string, error: unknown): Error {
    if (error instanceof OciError || error instanceof NoSessionError) return error
    if (error instanceof HoldXrpcError) {
      if (error.status === 401 || error.status === 403) {
        return new OciError('DENIED', {
          message: `hold ${hold.did} refused ${what}: ${error.error} ${error.message}`,
          cause: error,
        })
      }
      if (error.error === 'InvalidUploadId') return uploadUnknown()
      if (error.status === 413) {
        return new OciError('DENIED', {
          message: `hold ${hold.did} refused the blob: ${error.message}`,
          cause: error,
        })
      }
    }
    const reason =
      error instanceof HoldXrpcError ? `: ${error.status} ${error.error} ${error.message}` : ''
    return holdUnavailable(hold, `${what} failed${reason}`, error)
  }
}

function isInvalidDigest(error: unknown): boolean {
  return error instanceof HoldXrpcError && error.error === 'InvalidDigest'
}

function sessionOf(row: UploadRow): UploadSession {
  return {
    id: row.id,
    name: row.name,
    callerDid: row.caller_did,
    hold: { did: row.hold_did, endpoint: row.hold_endpoint },
    offset: row.received,
  }
}
