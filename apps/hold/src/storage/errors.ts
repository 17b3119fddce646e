/**
 * Typed storage errors. Every driver throws only these (a backend's own errors are wrapped
 * in `StorageBackendError`, with the original kept as `cause` for logs), so callers map
 * them to their surface by `code` without knowing which driver is configured.
 */

export type StorageErrorCode =
  | 'PATH_NOT_FOUND'
  | 'INVALID_PATH'
  | 'INVALID_RANGE'
  | 'UPLOAD_NOT_FOUND'
  | 'INVALID_PART'
  | 'PART_TOO_SMALL'
  | 'SIZE_MISMATCH'
  | 'TOO_LARGE'
  | 'STORAGE_FULL'
  | 'BACKEND'

export class StorageError extends Error {
  readonly code: StorageErrorCode

  constructor(code: StorageErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

export class PathNotFoundError extends StorageError {
  readonly path: string

  constructor(path: string) {
    super('PATH_NOT_FOUND', `no object at ${path}`)
    this.path = path
  }
}

/** A path or prefix outside the storage path grammar (see `validate.ts`). */
export class InvalidPathError extends StorageError {
  readonly path: string

  constructor(path: string, reason: string) {
    super('INVALID_PATH', `invalid storage path ${JSON.stringify(path)}: ${reason}`)
    this.path = path
  }
}

/** A byte range that is malformed or starts at or past the end of the object. */
export class InvalidRangeError extends StorageError {
  readonly path: string
  /** Size of the object when known, so HTTP surfaces can answer `Content-Range: bytes * /size`. */
  readonly size: number | undefined

  constructor(path: string, reason: string, size?: number) {
    super('INVALID_RANGE', `invalid range for ${path}: ${reason}`)
    this.path = path
    this.size = size
  }
}

/** The multipart upload does not exist: never created, completed, or aborted. */
export class UploadNotFoundError extends StorageError {
  readonly uploadId: string

  constructor(uploadId: string) {
    super('UPLOAD_NOT_FOUND', 'no such multipart upload')
    this.uploadId = uploadId
  }
}

/**
 * A part is unknown, its etag does not match what was stored, part numbers are out of
 * range or not ascending, or the part list is empty.
 */
export class InvalidPartError extends StorageError {
  readonly partNumber: number | undefined

  constructor(reason: string, partNumber?: number) {
    super('INVALID_PART', partNumber === undefined ? reason : `part ${partNumber}: ${reason}`)
    this.partNumber = partNumber
  }
}

/** A part other than the last is smaller than `MIN_PART_SIZE`. */
export class PartTooSmallError extends StorageError {
  /** Unknown when the backend does not say which part (S3's EntityTooSmall). */
  readonly partNumber: number | undefined
  readonly size: number | undefined

  constructor(minimum: number, partNumber?: number, size?: number) {
    super(
      'PART_TOO_SMALL',
      partNumber === undefined
        ? `a part other than the last is smaller than ${minimum} bytes`
        : `part ${partNumber} has ${size} bytes; all but the last part need ${minimum}`,
    )
    this.partNumber = partNumber
    this.size = size
  }
}

/** The body delivered a different number of bytes than the caller declared. */
export class SizeMismatchError extends StorageError {
  readonly expected: number
  readonly actual: number

  constructor(expected: number, actual: number) {
    super(
      'SIZE_MISMATCH',
      `expected ${expected} bytes, received ${actual}${actual > expected ? '+' : ''}`,
    )
    this.expected = expected
    this.actual = actual
  }
}

/** The body exceeds what the driver can store in one object or part. */
export class TooLargeError extends StorageError {
  readonly limit: number

  constructor(what: string, limit: number) {
    super('TOO_LARGE', `${what} exceeds ${limit} bytes`)
    this.limit = limit
  }
}

/** The backend has no room left for the bytes (a full disk: ENOSPC, EDQUOT; S3's 507). */
export class StorageFullError extends StorageError {
  constructor(operation: string, cause: unknown) {
    super('STORAGE_FULL', `storage ${operation} failed: no space left`, { cause })
  }
}

/** The backend failed (I/O error, network, S3 error without a specific mapping). */
export class StorageBackendError extends StorageError {
  constructor(operation: string, cause: unknown) {
    super('BACKEND', `storage ${operation} failed: ${describe(cause)}`, { cause })
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    return typeof code === 'string'
      ? `${code}: ${cause.message}`
      : `${cause.name}: ${cause.message}`
  }
  return String(cause)
}
