// One part of a hold multipart upload on its way: getPartUploadUrl names where it goes (a
// presigned storage URL, or the hold's own io.atcr.hold.uploadPart, which needs the
// caller's service token), then the bytes are PUT there with their exact Content-Length,
// either whole or streamed while they arrive, and the part's ETag comes back.
import type { FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { HOLD_UPLOAD_BLOB, NSID } from '@atcr/core/lexicons'
import { release } from '@atcr/core/memory'
import {
  type Hold,
  type HoldClient,
  HoldXrpcError,
  holdUnavailable,
  readXrpcJson,
} from '../holds/hold-client.ts'
import { xrpcUrl } from '../records/pds-reader.ts'

export interface PartTarget {
  hold: Hold
  callerDid: string
  uploadId: string
  partNumber: number
}

interface PartRequest {
  url: string
  method: string
  headers: Headers
  /** The hold's own uploadPart (JSON answer) rather than storage (ETag header). */
  throughHold: boolean
}

/** Where the part goes and with which headers. */
async function partRequest(
  holds: HoldClient,
  target: PartTarget,
  length: number,
): Promise<PartRequest> {
  const answer = await holds.procedure<{ url?: unknown; method?: unknown; headers?: unknown }>(
    target.hold,
    NSID.holdGetPartUploadUrl,
    { uploadId: target.uploadId, partNumber: target.partNumber },
    target.callerDid,
  )
  let url: URL
  try {
    url = new URL(String(answer.url))
  } catch {
    throw holdUnavailable(target.hold, 'getPartUploadUrl named no usable URL')
  }
  const headers = new Headers()
  if (typeof answer.headers === 'object' && answer.headers !== null) {
    for (const [key, value] of Object.entries(answer.headers)) {
      if (typeof value === 'string') headers.set(key, value)
    }
  }
  // A presigned storage URL carries its authorization in the URL and must not be sent a
  // token; the hold's own uploadPart needs the caller's.
  const throughHold = url.pathname === `/xrpc/${NSID.holdUploadPart}`
  if (throughHold) {
    if (!headers.has('x-upload-id')) headers.set('x-upload-id', target.uploadId)
    if (!headers.has('x-part-number')) headers.set('x-part-number', String(target.partNumber))
    const auth = await holds.authorization(target.hold, target.callerDid, NSID.holdUploadPart)
    if (auth) headers.set('authorization', auth)
  }
  headers.set('content-length', String(length))
  const method = typeof answer.method === 'string' ? answer.method : 'PUT'
  return { url: url.href, method, headers, throughHold }
}

async function etagOf(target: PartTarget, request: PartRequest, response: Response) {
  let etag: string | null
  if (request.throughHold) {
    etag =
      (await readXrpcJson<{ etag?: string }>(NSID.holdUploadPart, target.hold, response)).etag ??
      null
  } else {
    await response.body?.cancel()
    if (!response.ok) {
      throw holdUnavailable(
        target.hold,
        `storage refused part ${target.partNumber} (${response.status})`,
      )
    }
    etag = response.headers.get('etag')
  }
  if (!etag) throw holdUnavailable(target.hold, `part ${target.partNumber} got no ETag`)
  return etag
}

/** Sends a whole part held in memory; returns its ETag. */
export async function sendPart(
  holds: HoldClient,
  target: PartTarget,
  bytes: Uint8Array,
): Promise<string> {
  const request = await partRequest(holds, target, bytes.byteLength)
  let response: Response
  try {
    response = await holds.send(request.url, {
      method: request.method,
      headers: request.headers,
      body: bytes,
    })
  } catch (error) {
    throw holdUnavailable(target.hold, `sending part ${target.partNumber} failed`, error)
  }
  return etagOf(target, request, response)
}

const FILE_CHUNK = 1024 * 1024

/** Reads `length` bytes of `file` from `position`, a fresh buffer per chunk. */
async function* readFileRange(
  file: FileHandle,
  position: number,
  length: number,
): AsyncGenerator<Buffer> {
  let done = 0
  while (done < length) {
    const chunk = Buffer.allocUnsafe(Math.min(FILE_CHUNK, length - done))
    const { bytesRead } = await file.read(chunk, 0, chunk.byteLength, position + done)
    if (bytesRead === 0) throw new Error(`the file ended ${length - done} bytes early`)
    done += bytesRead
    yield bytesRead === chunk.byteLength ? chunk : chunk.subarray(0, bytesRead)
  }
}

/** Sends the first `length` bytes of a file as one part; returns its ETag. */
export async function sendFilePart(
  holds: HoldClient,
  target: PartTarget,
  file: FileHandle,
  length: number,
): Promise<string> {
  if (length <= FILE_CHUNK) {
    const bytes = Buffer.allocUnsafe(length)
    if (length > 0) {
      const { bytesRead } = await file.read(bytes, 0, length, 0)
      if (bytesRead !== length) throw new Error(`the file holds ${bytesRead} of ${length} bytes`)
    }
    return sendPart(holds, target, bytes)
  }
  const part = await StreamedPart.open(holds, target, length)
  try {
    await part.writeFile(file, length)
  } catch (error) {
    await part.abort()
    throw error
  }
  return part.finish()
}

/** The most bytes a blob may have to be sent whole in one call (read into memory first). */
export const WHOLE_BLOB_MAX = FILE_CHUNK

/**
 * Stores the first `length` bytes of a file (at most WHOLE_BLOB_MAX) on the hold as the
 * blob `digest` in one call, io.atcr.hold.uploadBlob (beyond the published lexicons):
 * what initiateUpload, getPartUploadUrl, uploadPart and completeUpload do in four. False,
 * with nothing stored, when the hold does not have the method (an older hold) or the
 * caller's PDS will not issue a token for it. Throws the hold's refusals as HoldXrpcError
 * (InvalidDigest when the bytes do not match).
 */
export async function sendWholeBlob(
  holds: HoldClient,
  target: { hold: Hold; callerDid: string; digest: string },
  file: FileHandle,
  length: number,
): Promise<boolean> {
  const bytes = Buffer.allocUnsafe(length)
  if (length > 0) {
    const { bytesRead } = await file.read(bytes, 0, length, 0)
    if (bytesRead !== length) throw new Error(`the file holds ${bytesRead} of ${length} bytes`)
  }
  const headers = new Headers({
    'content-type': 'application/octet-stream',
    'content-length': String(length),
  })
  let auth: string | undefined
  try {
    auth = await holds.authorization(target.hold, target.callerDid, HOLD_UPLOAD_BLOB)
  } catch {
    // Sessions granted before this method existed (an OAuth scope, a permission set) may
    // not cover it: the multipart methods are what they do cover.
    return false
  }
  if (auth) headers.set('authorization', auth)
  const url = xrpcUrl(target.hold.endpoint, HOLD_UPLOAD_BLOB, { digest: target.digest })
  let response: Response
  try {
    response = await holds.send(url.href, { method: 'PUT', headers, body: bytes })
  } catch (error) {
    throw holdUnavailable(target.hold, `${HOLD_UPLOAD_BLOB} failed`, error)
  }
  try {
    await readXrpcJson(HOLD_UPLOAD_BLOB, target.hold, response)
  } catch (error) {
    if (
      error instanceof HoldXrpcError &&
      (error.error === 'MethodNotImplemented' || error.status === 404)
    ) {
      return false
    }
    throw error
  }
  return true
}

/**
 * A part whose bytes are sent as they arrive. Its length is fixed when it opens: `finish`
 * once exactly that many bytes were written, or `abort` (the storage keeps nothing of an
 * interrupted part, and the same part number can be sent again).
 */
export class StreamedPart {
  readonly target: PartTarget
  readonly #body: Readable
  /** Chunks queued, and how many of them the connection has sent. */
  #queued = 0
  #sent = 0
  #wake: (() => void) | null = null
  #failure: unknown = null
  #response: Promise<Response>
  #request: PartRequest
  #abort = new AbortController()
  /** The answer, when it came before the body was complete: a refusal. */
  #early: Response | null = null

  private constructor(holds: HoldClient, target: PartTarget, request: PartRequest) {
    this.target = target
    this.#request = request
    // Object mode: read as they were pushed (a byte stream's reader gets what is queued
    // joined into a new buffer, a copy of every byte).
    this.#body = new Readable({ objectMode: true, read: () => {} })
    this.#body.on('error', (error) => this.#fail(error))
    this.#response = holds.upload(request.url, {
      method: request.method,
      headers: request.headers,
      body: this.#body,
      onSent: () => {
        this.#sent++
        if (this.#sent === this.#queued) this.#wakeWriter()
      },
      signal: this.#abort.signal,
    })
    this.#response.then(
      // An answer before the body is complete is a refusal: stop writing.
      (response) => {
        this.#early = response
        this.#fail(new Error('the part request ended early'))
      },
      (error: unknown) => this.#fail(error),
    )
  }

  static async open(holds: HoldClient, target: PartTarget, length: number): Promise<StreamedPart> {
    return new StreamedPart(holds, target, await partRequest(holds, target, length))
  }

  /**
   * Sends chunks; resolves once the connection has sent them all, when the caller may free
   * them (`release`). Chunks of a write that failed must stay as they are: the connection
   * may still hold them.
   */
  async write(...chunks: Uint8Array[]): Promise<void> {
    if (this.#failure === null && !this.#body.destroyed) {
      for (const chunk of chunks) {
        if (chunk.byteLength === 0) continue
        this.#queued++
        this.#body.push(chunk)
      }
    }
    while (this.#failure === null && this.#sent < this.#queued) {
      await new Promise<void>((resolve) => {
        this.#wake = resolve
      })
    }
    if (this.#failure !== null || this.#body.destroyed) {
      await this.#throwRefusal()
      throw holdUnavailable(
        this.target.hold,
        `sending part ${this.target.partNumber} failed`,
        this.#failure,
      )
    }
  }

  /** Sends the first `length` bytes of a file. */
  async writeFile(file: FileHandle, length: number): Promise<void> {
    for await (const chunk of readFileRange(file, 0, length)) {
      await this.write(chunk)
      release(chunk)
    }
  }

  /** Ends the body and waits for the part's ETag. */
  async finish(): Promise<string> {
    if (this.#failure === null) this.#body.push(null)
    let response: Response
    try {
      response = await this.#response
    } catch (error) {
      throw holdUnavailable(
        this.target.hold,
        `sending part ${this.target.partNumber} failed`,
        error,
      )
    }
    return etagOf(this.target, this.#request, response)
  }

  async abort(): Promise<void> {
    this.#abort.abort()
    const response = await this.#response.catch(() => null)
    await response?.body?.cancel().catch(() => {})
  }

  /** The hold's own error (QuotaExceeded, a full disk, ...) when it refused the part early. */
  async #throwRefusal(): Promise<void> {
    if (this.#early && !this.#early.ok) await etagOf(this.target, this.#request, this.#early)
  }

  #wakeWriter(): void {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  #fail(error: unknown): void {
    if (this.#failure === null) this.#failure = error
    this.#wakeWriter()
  }
}
