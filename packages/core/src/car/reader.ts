// The CAR v1 reader under repo import and `atcr verify`. Kept rather than @atproto/repo's
// readCarStream/readCar, which lack what an untrusted CAR needs: a byte limit (it reads
// whatever it is given), typed errors (plain Errors: truncation and corruption look alike),
// CIDs of any length (it assumes 36 bytes) and the hash policy of atproto (SHA-256 only).
// Its BlockMap and CBOR decoding are used.
import { createHash } from 'node:crypto'
import { type Cid, decodeCid, isCid, isDaslCid } from '@atproto/lex-data'
import { BlockMap, cborToLex } from '@atproto/repo'
import {
  BlockHashMismatchError,
  CarMalformedError,
  CarTooLargeError,
  CarTruncatedError,
} from './errors.ts'

/** CAR bytes: whole, or as chunks (a Node Readable, a fetch body, a generator). */
export type CarSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

export interface CarReadOptions {
  /** Reading stops with CarTooLargeError as soon as the CAR exceeds this many bytes. */
  maxBytes?: number
}

export interface CarBlock {
  cid: Cid
  bytes: Uint8Array
}

export interface CarContents {
  roots: Cid[]
  /** Every block, each checked to hash to its CID. */
  blocks: BlockMap
  /** Size of the CAR in bytes. */
  size: number
}

export const DEFAULT_MAX_CAR_BYTES = 256 * 1024 * 1024

const SHA256 = 0x12
const SHA256_LENGTH = 32
// A varint longer than this would exceed Number.MAX_SAFE_INTEGER.
const MAX_VARINT_BYTES = 8

/** Pulls chunks from a source on demand and hands out exact byte ranges. */
class ByteQueue {
  readonly #source: Iterator<Uint8Array> | AsyncIterator<Uint8Array>
  readonly #maxBytes: number
  #buffer: Uint8Array = new Uint8Array(0)
  #ended = false
  /** Bytes pulled from the source so far. */
  #pulled = 0
  /** Bytes handed out so far (the offset of the next byte in the CAR). */
  consumed = 0

  constructor(source: CarSource, maxBytes: number) {
    this.#maxBytes = maxBytes
    const iterable: Iterable<Uint8Array> | AsyncIterable<Uint8Array> =
      source instanceof Uint8Array ? [source] : source
    this.#source =
      Symbol.asyncIterator in iterable
        ? iterable[Symbol.asyncIterator]()
        : iterable[Symbol.iterator]()
  }

  get buffered(): number {
    return this.#buffer.byteLength
  }

  /** Buffers at least `n` bytes; false when the source ends first. */
  async fill(n: number): Promise<boolean> {
    if (this.#buffer.byteLength >= n) return true
    const parts = [this.#buffer]
    let have = this.#buffer.byteLength
    while (have < n && !this.#ended) {
      const next = await this.#source.next()
      if (next.done) {
        this.#ended = true
        break
      }
      const chunk: unknown = next.value
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError('CAR source must yield Uint8Array chunks')
      }
      this.#pulled += chunk.byteLength
      if (this.#pulled > this.#maxBytes) {
        await this.close()
        throw new CarTooLargeError(this.#maxBytes)
      }
      parts.push(chunk)
      have += chunk.byteLength
    }
    // Concatenating once per fill keeps a block arriving in many chunks linear to copy.
    if (parts.length > 1) this.#buffer = parts.length === 2 ? concat2(parts) : Buffer.concat(parts)
    return this.#buffer.byteLength >= n
  }

  peek(index: number): number {
    return this.#buffer[index]!
  }

  take(n: number): Uint8Array {
    const out = this.#buffer.subarray(0, n)
    this.#buffer = this.#buffer.subarray(n)
    this.consumed += n
    return out
  }

  /** Reads an unsigned LEB128 varint; null on a clean end of input. */
  async varint(what: string): Promise<number | null> {
    let value = 0
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (!(await this.fill(i + 1))) {
        if (i === 0) return null
        throw new CarTruncatedError(
          `CAR ends inside the length of ${what} at byte ${this.consumed}`,
        )
      }
      const byte = this.peek(i)
      value += (byte & 0x7f) * 2 ** (7 * i)
      if (byte < 0x80) {
        this.take(i + 1)
        return value
      }
    }
    throw new CarMalformedError(`varint too long for ${what} at byte ${this.consumed}`)
  }

  async close(): Promise<void> {
    if (this.#ended) return
    this.#ended = true
    await this.#source.return?.()
  }
}

function concat2(parts: Uint8Array[]): Uint8Array {
  // The first part is often empty: then the chunk itself is the buffer, no copy.
  if (parts[0]!.byteLength === 0) return parts[1]!
  return Buffer.concat(parts)
}

/** Length of the binary CID at the start of a block frame, or -1 if it is not a CIDv1. */
function cidLength(frame: Uint8Array): number {
  let pos = 0
  const next = (): number | null => {
    let value = 0
    for (let i = 0; i < 4; i++) {
      if (pos >= frame.length) return null
      const byte = frame[pos++]!
      value += (byte & 0x7f) * 2 ** (7 * i)
      if (byte < 0x80) return value
    }
    return null
  }
  const version = next()
  const codec = next()
  const hash = next()
  const digestLength = next()
  if (version !== 1 || codec === null || hash === null || digestLength === null) return -1
  const length = pos + digestLength
  return length <= frame.length ? length : -1
}

function parseHeader(bytes: Uint8Array): Cid[] {
  let header: unknown
  try {
    header = cborToLex(bytes)
  } catch (cause) {
    throw new CarMalformedError('CAR header is not DAG-CBOR', { cause })
  }
  if (typeof header !== 'object' || header === null || !('version' in header)) {
    throw new CarMalformedError('CAR header is not a map with a version')
  }
  if (header.version !== 1) {
    throw new CarMalformedError(`unsupported CAR version ${String(header.version)}`)
  }
  const roots = 'roots' in header ? header.roots : undefined
  if (!Array.isArray(roots) || !roots.every((root) => isCid(root))) {
    throw new CarMalformedError('CAR header roots are not a list of CIDs')
  }
  return roots
}

/**
 * Reads a CAR v1 block by block, checking each block's bytes against its CID
 * (SHA-256, DAG-CBOR or raw, as atproto requires). Only the current block is buffered.
 */
export async function readCarStream(
  source: CarSource,
  options: CarReadOptions = {},
): Promise<{ roots: Cid[]; blocks: AsyncGenerator<CarBlock, void> }> {
  const { roots, queue } = await openCar(source, options)
  return { roots, blocks: iterateBlocks(queue) }
}

async function openCar(
  source: CarSource,
  options: CarReadOptions,
): Promise<{ roots: Cid[]; queue: ByteQueue }> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_CAR_BYTES
  if (source instanceof Uint8Array && source.byteLength > maxBytes) {
    throw new CarTooLargeError(maxBytes)
  }
  const queue = new ByteQueue(source, maxBytes)
  try {
    const headerLength = await queue.varint('the header')
    if (headerLength === null) throw new CarTruncatedError('CAR is empty')
    if (headerLength === 0) throw new CarMalformedError('CAR header is empty')
    if (!(await queue.fill(headerLength))) {
      throw new CarTruncatedError(
        `CAR ends inside its header (${queue.buffered} of ${headerLength} bytes)`,
      )
    }
    return { roots: parseHeader(queue.take(headerLength)), queue }
  } catch (error) {
    await queue.close()
    throw error
  }
}

async function* iterateBlocks(queue: ByteQueue): AsyncGenerator<CarBlock, void> {
  try {
    for (;;) {
      const offset = queue.consumed
      const length = await queue.varint('a block')
      if (length === null) return
      if (length === 0) throw new CarMalformedError(`empty block frame at byte ${offset}`)
      if (!(await queue.fill(length))) {
        throw new CarTruncatedError(
          `CAR ends inside the block at byte ${offset} (${queue.buffered} of ${length} bytes)`,
        )
      }
      const frame = queue.take(length)
      const cidBytes = cidLength(frame)
      if (cidBytes < 0) throw new CarMalformedError(`block at byte ${offset} has no valid CIDv1`)
      let cid: Cid
      try {
        cid = decodeCid(frame.subarray(0, cidBytes))
      } catch (cause) {
        throw new CarMalformedError(`block at byte ${offset} has no valid CID`, { cause })
      }
      if (
        !isDaslCid(cid) ||
        cid.multihash.code !== SHA256 ||
        cid.multihash.digest.byteLength !== SHA256_LENGTH
      ) {
        throw new CarMalformedError(
          `block ${cid} at byte ${offset} is not a SHA-256 DAG-CBOR/raw CID`,
        )
      }
      const bytes = frame.subarray(cidBytes)
      const digest = createHash('sha256').update(bytes).digest()
      if (!digest.equals(cid.multihash.digest)) throw new BlockHashMismatchError(cid, offset)
      yield { cid, bytes }
    }
  } finally {
    await queue.close()
  }
}

/** Reads a whole CAR into memory (bounded by `maxBytes`), every block hash-checked. */
export async function readCar(
  source: CarSource,
  options: CarReadOptions = {},
): Promise<CarContents> {
  const { roots, queue } = await openCar(source, options)
  const blocks = new BlockMap()
  for await (const block of iterateBlocks(queue)) blocks.set(block.cid, block.bytes)
  return { roots, blocks, size: queue.consumed }
}
