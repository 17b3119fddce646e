// Sending a local file's bytes to an HTTP response as cheaply as Node allows (it has no
// sendfile): two buffers, reused for the whole response, one read ahead while the other is
// written. Piping a read stream instead allocates a fresh buffer per chunk, which V8 frees
// only with full collections (bench/README.md: a 512 MiB GET cost 0.4-0.6 s of CPU piped,
// 0.2-0.26 s this way). Full-size buffers go back to a small pool when a response is sent,
// the others are freed there and then, and the pool once the hold is idle: 32 concurrent
// pulls otherwise left 32 MiB of them for a full collection that might never come.
import type { Writable } from 'node:stream'
import { release } from '@atcr/core/memory'
import type { LocalRange } from './driver.ts'

const BUFFER_BYTES = 512 * 1024
/** Full-size buffers kept between responses (8 MiB). */
const MAX_POOLED_BUFFERS = 16
/** An idle hold keeps no buffers: the pool is freed this long after the last response. */
const POOL_IDLE_MS = 30_000
const pool: Buffer<ArrayBuffer>[] = []
let poolExpiry: NodeJS.Timeout | undefined

/** A buffer of `size` bytes: a pooled one when full-size, else a new one. */
function takeBuffer(size: number): Buffer<ArrayBuffer> {
  return (size === BUFFER_BYTES && pool.pop()) || Buffer.allocUnsafeSlow(size)
}

/** Returns buffers no write holds any more: full-size ones are kept, the others freed. */
function releaseBuffers(buffers: Buffer<ArrayBuffer>[]): void {
  for (const buffer of buffers) {
    if (buffer.length === BUFFER_BYTES && pool.length < MAX_POOLED_BUFFERS) pool.push(buffer)
    else release(buffer)
  }
  poolExpiry ??= setTimeout(freePool, POOL_IDLE_MS).unref()
  poolExpiry.refresh()
}

function freePool(): void {
  for (const buffer of pool.splice(0)) release(buffer)
  poolExpiry = undefined
}

/** How many buffers wait in the pool (tests). */
export function pooledBufferCount(): number {
  return pool.length
}

/**
 * Writes `range` to `destination`, ends it, and closes the file. Each write is awaited
 * before its buffer is read into again. Stops when the destination closes (the client
 * went away: an HTTP response may then never call a write back); a read error, or a file
 * shorter than the range, destroys the destination rather than send fewer bytes than
 * announced.
 */
export async function sendLocalRange(range: LocalRange, destination: Writable): Promise<void> {
  const { handle } = range
  let gone = destination.destroyed
  let wake: (() => void) | null = null
  const onClose = () => {
    gone = true
    wake?.()
  }
  destination.once('close', onClose)
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => {
      wake = resolve
      destination.write(chunk, (error) => (error ? reject(error) : resolve()))
    })
  try {
    // No bigger than the range: a pull of many small layers would otherwise allocate
    // 1 MiB per blob, and the collections that frees them cost more than the sending.
    const size = Math.max(1, Math.min(BUFFER_BYTES, range.end - range.start))
    const buffers = [takeBuffer(size), takeBuffer(size)]
    let position = range.start
    let next = 0
    let writing: Promise<void> = Promise.resolve()
    while (position < range.end && !gone) {
      const buffer = buffers[next]!
      const want = Math.min(buffer.length, range.end - position)
      const { bytesRead } = await handle.read(buffer, 0, want, position)
      if (bytesRead === 0) throw new Error(`the file ends at ${position}, before ${range.end}`)
      await writing
      if (gone) break
      position += bytesRead
      writing = write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead))
      // Awaited at the next turn; a failure while the next read runs is not unhandled.
      writing.catch(() => {})
      next ^= 1
    }
    await writing
    if (!gone) {
      destination.end()
      // Only now: a response cut short may still hold its last chunk in a pending write.
      releaseBuffers(buffers)
    }
  } catch (error) {
    destination.destroy(error instanceof Error ? error : new Error(String(error)))
  } finally {
    destination.off('close', onClose)
    await handle.close().catch(() => {})
  }
}
