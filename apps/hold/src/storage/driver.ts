import type { FileHandle } from 'node:fs/promises'
import type { Readable } from 'node:stream'

/**
 * The hold's storage driver: byte streams under string paths, nothing about OCI.
 *
 * Paths are relative, `/`-separated, and follow the grammar in `validate.ts` (segments of
 * `[A-Za-z0-9._-]`, none starting with `.`); `paths.ts` formats the hold's layout.
 * Prefixes name a folder: `list('a/b')` and `deletePrefix('a/b')` cover `a/b/...` but
 * neither `a/b` itself nor `a/bc/...`.
 *
 * Every method throws only the typed errors of `errors.ts`, with one exception: when the
 * source given to `write` or `writePart` fails, that call rejects with the source's own
 * error (so a client that went away is not mistaken for a storage failure).
 */
export interface StorageDriver {
  readonly kind: 'filesystem' | 's3'

  /** Size and modification time, or null when nothing is stored at `path`. */
  stat(path: string): Promise<ObjectStat | null>

  /**
   * Opens the object (or a byte range of it) for streaming. Resolves once the object is
   * known to exist and the range to be satisfiable, so errors are thrown here, not by the
   * stream: `PathNotFoundError`, `InvalidRangeError`. The stream's chunks belong to the
   * reader, who may free each one once done with it (`release` in `bytes.ts`).
   */
  read(path: string, range?: ByteRange): Promise<Readable>

  /**
   * The object (or a byte range of it) as an open local file, on drivers that store files
   * (the filesystem), for `sendLocalRange`: cheaper than `read` piped (no buffer allocated
   * per chunk). Same errors as `read`; the caller closes the handle.
   */
  openLocal?(path: string, range?: ByteRange): Promise<LocalRange>

  /**
   * Stores the stream at `path`, replacing any object there. Readers see the old object or
   * the complete new one, never a part; on a source error nothing changes. Memory stays
   * bounded whatever the size.
   */
  write(path: string, source: ByteSource): Promise<WriteResult>

  /** Removes the object; removing a missing object is not an error. */
  delete(path: string): Promise<void>

  /** Removes every object under the folder `prefix` (which must not be empty). */
  deletePrefix(prefix: string): Promise<void>

  /**
   * Every object under the folder `prefix` (`''`: all objects), in no particular order,
   * fetched lazily page by page.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>

  /** Moves an object, replacing the target; `PathNotFoundError` when `from` is missing. */
  move(from: string, to: string): Promise<void>

  /**
   * Starts a multipart upload that will become the object at `path`. The returned id is
   * opaque and stays valid across process restarts until completed or aborted. It may
   * encode the target path: keep it server-side, never accept one from a client.
   */
  createMultipart(path: string): Promise<string>

  /**
   * Stores part `partNumber` (1..10000) of the upload, replacing an earlier part with the
   * same number. `size`, when known (a Content-Length), is checked against the body and
   * lets drivers stream the part without staging it. `handOver` gives the source's chunks
   * to the driver (the caller never touches them again): a driver may then free each one
   * as soon as it has stored it (`release` in `bytes.ts`) instead of leaving it to the
   * garbage collector.
   */
  writePart(
    uploadId: string,
    partNumber: number,
    source: ByteSource,
    options?: WritePartOptions,
  ): Promise<UploadedPart>

  /**
   * A presigned request with which a client uploads the part directly (the response's
   * `ETag` header is the part's etag), or null when the driver cannot presign.
   */
  presignPart(
    uploadId: string,
    partNumber: number,
    options?: PresignOptions,
  ): Promise<PresignedRequest | null>

  /**
   * Assembles the listed parts, in ascending part-number order, into the target object
   * and ends the upload. Every part but the last needs at least `MIN_PART_SIZE` bytes.
   * On `InvalidPartError` or `PartTooSmallError` nothing appears at the target and the
   * upload stays open, so the caller may retry or abort.
   *
   * `onData` lets the caller see the assembled bytes as the driver assembles them (to hash
   * them without reading the object back); drivers that cannot (S3 assembles server-side)
   * ignore it and answer `observed: false`. When it throws, nothing appears at the target,
   * the upload stays open, and the call rejects with that error.
   */
  completeMultipart(
    uploadId: string,
    parts: readonly PartRef[],
    options?: CompleteMultipartOptions,
  ): Promise<CompleteMultipartResult>

  /** Drops the upload and its parts; aborting an unknown upload is not an error. */
  abortMultipart(uploadId: string): Promise<void>

  /**
   * Bytes still free for new objects (what an unprivileged writer may use), or null when
   * the backend has no such notion (S3).
   */
  freeSpace(): Promise<number | null>

  /** A presigned GET URL for the object, or null when the driver cannot presign. */
  presignGet(path: string, options?: PresignOptions): Promise<string | null>

  /** Releases connections. The driver must not be used afterwards. */
  close(): Promise<void>
}

/**
 * `Readable` streams are async iterables too. Chunks must be bytes (Buffer/Uint8Array) and
 * must not be modified after being yielded (drivers may hold them until a part is full).
 */
export type ByteSource = Readable | AsyncIterable<Uint8Array>

export interface WritePartOptions {
  size?: number
  handOver?: boolean
}

export interface CompleteMultipartOptions {
  /**
   * Called with every byte of the assembled object, in order, each byte once, before the
   * object appears at the target. The chunk is lent: it is valid only during the call (the
   * driver reuses its buffer), so copy whatever must outlive it and never modify it.
   */
  onData?: (chunk: Uint8Array) => void
}

export interface CompleteMultipartResult extends WriteResult {
  /** True when `onData` was given and saw the whole object; absent or false otherwise. */
  observed?: boolean
}

export interface ObjectStat {
  size: number
  modifiedAt: Date
}

export interface ObjectInfo extends ObjectStat {
  path: string
}

/** An open file and the bytes of it to send: `start` inclusive, `end` exclusive. */
export interface LocalRange {
  handle: FileHandle
  start: number
  end: number
}

/**
 * Byte range: `start` inclusive, `end` EXCLUSIVE (like `Buffer.subarray`; an HTTP
 * `Range: bytes=a-b` is `{ start: a, end: b + 1 }`). `end` past the object's size is
 * clamped. A `start` at or past the size is an `InvalidRangeError`, except that no range
 * (or `{ start: 0 }`) reads any object whole, including an empty one.
 */
export interface ByteRange {
  start?: number
  end?: number
}

export interface WriteResult {
  size: number
}

export interface UploadedPart {
  partNumber: number
  /** Opaque; pass it back verbatim to `completeMultipart`. */
  etag: string
  size: number
}

export interface PartRef {
  partNumber: number
  etag: string
}

export interface PresignOptions {
  /** Lifetime of the URL in seconds; the driver's configured default when omitted. */
  ttl?: number
}

export interface PresignedRequest {
  url: string
  method: 'PUT'
  /** Headers the client must send with the request (none today; kept for forward use). */
  headers: Record<string, string>
  expiresAt: Date
}
