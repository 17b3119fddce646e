// Content digests: parsing per the OCI image spec grammar, restricted to sha256 and sha512,
// and hashing, one-shot or while bytes stream past.
import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'
import { OciError } from './errors.ts'
import { quoteInput } from './input.ts'

export type DigestAlgorithm = 'sha256' | 'sha512'

export const DIGEST_ALGORITHMS: readonly DigestAlgorithm[] = ['sha256', 'sha512']

const HEX_LENGTH: Readonly<Record<DigestAlgorithm, number>> = { sha256: 64, sha512: 128 }

// digest ::= algorithm ":" encoded, as the image spec writes it; the registered algorithms
// then narrow `encoded` to lowercase hex of a fixed length.
const DIGEST_GRAMMAR = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/

export interface ParsedDigest {
  algorithm: DigestAlgorithm
  hex: string
  /** The digest string itself, `algorithm:hex`. */
  digest: string
}

export type InvalidDigestReason = 'format' | 'algorithm' | 'encoding'

/** A digest string that is malformed or uses an algorithm other than sha256/sha512. */
export class InvalidDigestError extends OciError {
  override readonly name: string = 'InvalidDigestError'
  readonly reason: InvalidDigestReason
  readonly input: string

  constructor(input: string, reason: InvalidDigestReason, explanation: string) {
    super('DIGEST_INVALID', {
      message: `invalid digest ${quoteInput(input)}: ${explanation}`,
      detail: { digest: input.slice(0, 200) },
    })
    this.reason = reason
    this.input = input
  }
}

/** Content whose digest is not the one the client announced. */
export class DigestMismatchError extends OciError {
  override readonly name: string = 'DigestMismatchError'
  readonly expected: string
  readonly actual: string

  constructor(expected: string, actual: string) {
    super('DIGEST_INVALID', {
      message: `content digest ${actual} does not match ${expected}`,
      detail: { expected, actual },
    })
    this.expected = expected
    this.actual = actual
  }
}

export function isDigestAlgorithm(value: unknown): value is DigestAlgorithm {
  return value === 'sha256' || value === 'sha512'
}

/** Parses `sha256:<64 hex>` or `sha512:<128 hex>`; throws InvalidDigestError otherwise. */
export function parseDigest(value: string): ParsedDigest {
  if (!value.includes(':')) {
    throw new InvalidDigestError(value, 'format', 'expected <algorithm>:<hex>')
  }
  const match = DIGEST_GRAMMAR.exec(value)
  if (!match) {
    throw new InvalidDigestError(value, 'format', 'not of the form <algorithm>:<encoded>')
  }
  const algorithm = match[1]!
  const hex = match[2]!
  if (!isDigestAlgorithm(algorithm)) {
    throw new InvalidDigestError(
      value,
      'algorithm',
      `unsupported algorithm ${quoteInput(algorithm)} (supported: ${DIGEST_ALGORITHMS.join(', ')})`,
    )
  }
  const length = HEX_LENGTH[algorithm]
  if (hex.length !== length) {
    throw new InvalidDigestError(
      value,
      'encoding',
      `${algorithm} needs ${length} hex characters, got ${hex.length}`,
    )
  }
  if (!/^[a-f0-9]+$/.test(hex)) {
    throw new InvalidDigestError(value, 'encoding', `${algorithm} needs lowercase hex`)
  }
  return { algorithm, hex, digest: value }
}

export function isDigest(value: unknown): value is string {
  if (typeof value !== 'string') return false
  try {
    parseDigest(value)
    return true
  } catch {
    return false
  }
}

/** Incremental hashing; `size` counts the bytes seen so far. */
export interface Digester {
  readonly algorithm: DigestAlgorithm
  readonly size: number
  update(chunk: Uint8Array | string): this
  /** `algorithm:hex` of everything given to update(); call once. */
  digest(): string
}

class NodeDigester implements Digester {
  readonly algorithm: DigestAlgorithm
  #hash: Hash
  #size = 0

  constructor(algorithm: DigestAlgorithm) {
    this.algorithm = algorithm
    this.#hash = createHash(algorithm)
  }

  get size(): number {
    return this.#size
  }

  update(chunk: Uint8Array | string): this {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    this.#hash.update(bytes)
    this.#size += bytes.byteLength
    return this
  }

  digest(): string {
    return `${this.algorithm}:${this.#hash.digest('hex')}`
  }
}

export function createDigester(algorithm: DigestAlgorithm = 'sha256'): Digester {
  if (!isDigestAlgorithm(algorithm))
    throw new TypeError(`unsupported digest algorithm ${algorithm}`)
  return new NodeDigester(algorithm)
}

/** The digest of bytes in memory (strings are hashed as UTF-8). */
export function digestOf(
  bytes: Uint8Array | string,
  algorithm: DigestAlgorithm = 'sha256',
): string {
  return createDigester(algorithm).update(bytes).digest()
}

function actualDigest(expected: ParsedDigest, actual: string | Uint8Array): string {
  return typeof actual === 'string'
    ? parseDigest(actual).digest
    : digestOf(actual, expected.algorithm)
}

/**
 * True when `actual` (a digest string, or the content itself, hashed with the expected
 * digest's algorithm) matches `expected`. Malformed digests never match.
 */
export function matchesDigest(expected: string, actual: string | Uint8Array): boolean {
  try {
    const parsed = parseDigest(expected)
    return actualDigest(parsed, actual) === parsed.digest
  } catch {
    return false
  }
}

/**
 * Throws DigestMismatchError unless `actual` (a digest string, or the content itself)
 * matches `expected`, and InvalidDigestError when either digest is malformed.
 */
export function verifyDigest(expected: string, actual: string | Uint8Array): ParsedDigest {
  const parsed = parseDigest(expected)
  const got = actualDigest(parsed, actual)
  if (got !== parsed.digest) throw new DigestMismatchError(parsed.digest, got)
  return parsed
}

export interface DigestResult extends ParsedDigest {
  /** Bytes hashed. */
  size: number
}

export interface DigestStreamOptions {
  /** Defaults to the expected digest's algorithm, else sha256. */
  algorithm?: DigestAlgorithm
  /** When set, the stream fails with DIGEST_INVALID at its end if the bytes differ. */
  expected?: string
  /** When set, the stream fails with SIZE_INVALID at its end if the length differs. */
  expectedSize?: number
}

/**
 * A pass-through stream that hashes and counts the bytes flowing through it, holding none of
 * them beyond the chunk in hand. When `expected` or `expectedSize` is given, a mismatch fails
 * the stream before it ends, so a pipeline writing the blob never sees a clean end.
 */
export class DigestStream extends Transform {
  readonly algorithm: DigestAlgorithm
  /** Settles when the stream ends: the digest and size, or the error that stopped it. */
  readonly result: Promise<DigestResult>
  #digester: Digester
  #expected: ParsedDigest | undefined
  #expectedSize: number | undefined
  #resolve!: (result: DigestResult) => void
  #reject!: (error: unknown) => void
  #settled = false

  constructor(options: DigestStreamOptions = {}) {
    super()
    this.#expected = options.expected === undefined ? undefined : parseDigest(options.expected)
    if (
      options.expectedSize !== undefined &&
      !(Number.isSafeInteger(options.expectedSize) && options.expectedSize >= 0)
    ) {
      throw new RangeError(`expectedSize must be a non-negative integer: ${options.expectedSize}`)
    }
    this.#expectedSize = options.expectedSize
    this.algorithm = options.algorithm ?? this.#expected?.algorithm ?? 'sha256'
    this.#digester = createDigester(this.algorithm)
    this.result = new Promise<DigestResult>((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    // Whoever only pipes and never awaits `result` must not get an unhandled rejection;
    // the stream's own 'error' event still reports the failure.
    this.result.catch(() => {})
  }

  /** Bytes that have passed so far. */
  get size(): number {
    return this.#digester.size
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#digester.update(chunk)
    callback(null, chunk)
  }

  override _flush(callback: TransformCallback): void {
    const size = this.#digester.size
    const digest = this.#digester.digest()
    if (this.#expectedSize !== undefined && size !== this.#expectedSize) {
      callback(
        new OciError('SIZE_INVALID', {
          message: `received ${size} bytes, expected ${this.#expectedSize}`,
          detail: { expected: this.#expectedSize, actual: size },
        }),
      )
      return
    }
    if (this.#expected !== undefined && digest !== this.#expected.digest) {
      callback(new DigestMismatchError(this.#expected.digest, digest))
      return
    }
    this.#settled = true
    this.#resolve({ ...parseDigest(digest), size })
    callback()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#settled) {
      this.#settled = true
      this.#reject(error ?? new Error('stream closed before all bytes were hashed'))
    }
    callback(error)
  }
}

export function createDigestStream(options: DigestStreamOptions = {}): DigestStream {
  return new DigestStream(options)
}

/** Hashes a byte source (a Readable, or any async or sync iterable of chunks) to its end. */
export async function digestOfStream(
  source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  algorithm: DigestAlgorithm = 'sha256',
): Promise<DigestResult> {
  const digester = createDigester(algorithm)
  for await (const chunk of source) digester.update(chunk)
  const size = digester.size
  return { ...parseDigest(digester.digest()), size }
}
