import type { ByteRange, PartRef } from './driver.ts'
import { InvalidPartError, InvalidPathError, InvalidRangeError } from './errors.ts'

/** S3's floor for every part but the last; the filesystem driver applies it too. */
export const MIN_PART_SIZE = 5 * 1024 * 1024
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
export const MAX_PART_NUMBER = 10_000
/** S3 caps presigned URLs (SigV4) at seven days. */
export const MAX_PRESIGN_TTL = 7 * 24 * 3600

const MAX_PATH_LENGTH = 1024
// A deliberately narrow grammar: safe as a file name on every filesystem and as an S3 key
// without any URL encoding, and leaves names starting with `.` to drivers' own state.
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/

/** Throws `InvalidPathError` unless `path` is a storage path (see `driver.ts`). */
export function validatePath(path: string): string {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidPathError(path, 'empty')
  checkSegments(path)
  return path
}

/** Like `validatePath`, but `''` (everything) is allowed and one trailing `/` is dropped. */
export function validatePrefix(prefix: string): string {
  if (typeof prefix !== 'string') throw new InvalidPathError(String(prefix), 'not a string')
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  if (trimmed.length > 0) checkSegments(trimmed)
  return trimmed
}

function checkSegments(path: string): void {
  if (path.length > MAX_PATH_LENGTH) throw new InvalidPathError(path, 'too long')
  for (const segment of path.split('/')) {
    if (!SEGMENT.test(segment)) {
      throw new InvalidPathError(
        path,
        segment.length === 0
          ? 'empty segment (leading, trailing or double slash)'
          : `segment ${JSON.stringify(segment)} must match ${SEGMENT.source}`,
      )
    }
  }
}

export function validatePartNumber(partNumber: number): void {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
    throw new InvalidPartError(`part numbers run from 1 to ${MAX_PART_NUMBER}`, partNumber)
  }
}

/** Checks what `completeMultipart` can check before touching storage. */
export function validatePartList(parts: readonly PartRef[]): void {
  if (parts.length === 0) throw new InvalidPartError('no parts')
  let previous = 0
  for (const part of parts) {
    validatePartNumber(part.partNumber)
    if (part.partNumber <= previous) {
      throw new InvalidPartError('parts must be listed in ascending order', part.partNumber)
    }
    if (typeof part.etag !== 'string' || part.etag.length === 0) {
      throw new InvalidPartError('missing etag', part.partNumber)
    }
    previous = part.partNumber
  }
}

export function validateDeclaredSize(size: number | undefined, limit: number): void {
  if (size === undefined) return
  if (!Number.isSafeInteger(size) || size < 0 || size > limit) {
    throw new RangeError(`declared size must be an integer from 0 to ${limit}`)
  }
}

export function presignTtl(ttl: number | undefined, fallback: number): number {
  const seconds = ttl ?? fallback
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_TTL) {
    throw new RangeError(`presign ttl must be an integer from 1 to ${MAX_PRESIGN_TTL} seconds`)
  }
  return seconds
}

/**
 * A range after the checks that need no size: `null` means the whole object.
 * `end` stays exclusive and may still exceed the size (clamped later).
 */
export interface NormalizedRange {
  start: number
  end: number | undefined
}

export function normalizeRange(path: string, range: ByteRange | undefined): NormalizedRange | null {
  if (range === undefined) return null
  const start = range.start ?? 0
  const { end } = range
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new InvalidRangeError(path, 'start must be a non-negative integer')
  }
  if (end !== undefined && (!Number.isSafeInteger(end) || end <= start)) {
    throw new InvalidRangeError(path, 'end must be an integer greater than start')
  }
  if (start === 0 && end === undefined) return null
  return { start, end }
}

/** Applies a normalized range to a known size: inclusive first and last byte offsets. */
export function resolveRange(
  path: string,
  range: NormalizedRange,
  size: number,
): { first: number; last: number } {
  if (range.start >= size) {
    throw new InvalidRangeError(path, `start ${range.start} is not before the size ${size}`, size)
  }
  const end = range.end === undefined ? size : Math.min(range.end, size)
  return { first: range.start, last: end - 1 }
}

/** Etags compare without the surrounding quotes S3 puts on them. */
export function bareEtag(etag: string): string {
  return etag.replace(/^(W\/)?"|"$/g, '')
}
