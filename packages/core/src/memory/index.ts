// Freeing buffers as soon as nothing needs them, rather than when V8 gets round to it.

/**
 * Frees a chunk's memory now instead of at V8's next full garbage collection. Buffers live
 * outside V8's heap, and V8 collects them only after some 20-60 MiB of them have piled
 * up: freed in such batches, 64 KiB socket chunks (below glibc's mmap threshold, so in
 * its heap) leave the heap fragmented, RSS that never comes back, and a 1 GiB upload keeps
 * tens of MiB of dead chunks resident. It detaches the chunk's memory (the chunk reads as
 * empty afterwards), so it is only for a chunk the caller owns outright: nothing else
 * reads it and no pending I/O uses it. A chunk sharing its memory (a slice, one of Node's
 * pooled small buffers) is left to the garbage collector.
 */
export function release(chunk: Uint8Array): void {
  const { buffer } = chunk
  if (
    buffer instanceof ArrayBuffer &&
    !buffer.detached &&
    !buffer.resizable &&
    chunk.byteOffset === 0 &&
    chunk.byteLength === buffer.byteLength
  ) {
    buffer.transfer(0)
  }
}
