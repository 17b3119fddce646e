import type { ByteSource } from './driver.ts'
import { SizeMismatchError, StorageError, TooLargeError } from './errors.ts'

/** Chunks of a source as bytes; anything else (a string-mode stream) is a caller bug. */
export async function* bytesOf(source: ByteSource): AsyncGenerator<Uint8Array> {
  for await (const chunk of source as AsyncIterable<unknown>) {
    if (!(chunk instanceof Uint8Array)) {
      throw new TypeError('storage sources must yield Uint8Array chunks')
    }
    if (chunk.length > 0) yield chunk
  }
}

/**
 * Counts bytes as they pass and enforces a declared size (`expected`) and a hard cap
 * (`limit`): exceeding either fails at once, before the excess is stored; a short body
 * fails at the end.
 */
export class ByteCounter {
  total = 0
  readonly #expected: number | undefined
  readonly #limit: number
  readonly #what: string

  constructor(what: string, limit: number, expected?: number) {
    this.#what = what
    this.#limit = limit
    this.#expected = expected
  }

  add(length: number): void {
    this.total += length
    if (this.#expected !== undefined && this.total > this.#expected) {
      throw new SizeMismatchError(this.#expected, this.total)
    }
    if (this.total > this.#limit) throw new TooLargeError(this.#what, this.#limit)
  }

  finish(): number {
    if (this.#expected !== undefined && this.total !== this.#expected) {
      throw new SizeMismatchError(this.#expected, this.total)
    }
    return this.total
  }

  /** Passes the chunks through, counting them, and checks the total at the end. */
  async *through(source: ByteSource): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of bytesOf(source)) {
        this.add(chunk.length)
        yield chunk
      }
    } catch (err) {
      if (!(err instanceof StorageError)) this.#sourceFailure = { error: err }
      throw err
    }
    this.finish()
  }

  /**
   * The error to report for a failed write: the source's own error when the source failed
   * (the caller's problem, e.g. a client that went away), otherwise `err`.
   */
  blame(err: unknown): unknown {
    return this.#sourceFailure === undefined ? err : this.#sourceFailure.error
  }

  #sourceFailure: { error: unknown } | undefined
}

/**
 * Regroups a source into buffers of exactly `size` bytes (the last one shorter, and none
 * for an empty source). Memory is at most one part plus what the consumer still holds; a
 * small object costs only its own size.
 */
export async function* fixedChunks(
  source: AsyncIterable<Uint8Array>,
  size: number,
): AsyncGenerator<Buffer> {
  let pending: Uint8Array[] = []
  let filled = 0
  for await (const chunk of source) {
    let rest = chunk
    while (filled + rest.length >= size) {
      const take = size - filled
      pending.push(rest.subarray(0, take))
      const part = Buffer.concat(pending, size)
      // Dropped before yielding: the consumer may hold on to the part for a while.
      pending = []
      filled = 0
      rest = rest.subarray(take)
      yield part
    }
    if (rest.length > 0) {
      pending.push(rest)
      filled += rest.length
    }
  }
  if (filled > 0) yield Buffer.concat(pending, filled)
}
