// The digest of an upload hashed while its parts arrive through the hold, so completeUpload
// need not read the assembled blob back. Parts sent one after the other (1, 2, 3, ...,
// the AppView's way) extend the running hash; a retry of the last part replaces it. Any
// other order, parts sent at the same time, a part that went straight to storage, or a
// restart of the hold leave no running digest: completion then hashes the stored bytes.
import { createHash, type Hash } from 'node:crypto'
import type { DigestAlgorithm } from '@atcr/core/oci'
import { type ByteSource, bareEtag } from '../storage/index.ts'

/** Running digests kept at most (the oldest is dropped first; it costs a read-back). */
const MAX_RUNNING = 1024

interface Running {
  readonly algorithm: DigestAlgorithm
  /** Hash of parts 1 .. etags.length. */
  hash: Hash
  /** Hash of parts 1 .. etags.length - 1, for a retry of the last part. */
  before: Hash | null
  /** The etag of each part hashed, in order. */
  etags: string[]
  partInFlight: boolean
  /** Seen out of order or concurrently: never used again. */
  broken: boolean
}

export interface PartTap {
  /** The source, each chunk hashed before the driver sees it. */
  through(source: ByteSource): AsyncGenerator<Uint8Array>
  /** The part is stored under `etag`: the running digest now covers it. */
  commit(etag: string): void
  /** The part failed: the running digest stays as it was. */
  end(): void
}

export class RunningDigests {
  readonly #uploads = new Map<string, Running>()

  /**
   * A tap for part `partNumber` of the upload, or null when the running digest cannot
   * cover it (it is then marked broken and completion reads the blob back).
   */
  tap(uploadId: string, partNumber: number, algorithm: DigestAlgorithm): PartTap | null {
    let running = this.#uploads.get(uploadId)
    if (running === undefined && partNumber === 1) {
      running = {
        algorithm,
        hash: createHash(algorithm),
        before: null,
        etags: [],
        partInFlight: false,
        broken: false,
      }
      this.#remember(uploadId, running)
    }
    if (running === undefined || running.broken) return null
    const count = running.etags.length
    const base =
      partNumber === count + 1 ? running.hash : partNumber === count ? running.before : null
    if (base === null || running.partInFlight || running.algorithm !== algorithm) {
      this.#break(uploadId, running)
      return null
    }
    const entry = running
    const fork = base.copy()
    let open = true
    entry.partInFlight = true
    return {
      async *through(source) {
        for await (const chunk of source as AsyncIterable<Uint8Array>) {
          if (open) fork.update(chunk)
          yield chunk
        }
      },
      commit(etag) {
        if (!open) return
        open = false
        entry.partInFlight = false
        if (partNumber === count + 1) {
          entry.before = entry.hash
          entry.etags.push(etag)
        } else {
          entry.etags[count - 1] = etag
        }
        entry.hash = fork
      },
      end() {
        if (!open) return
        open = false
        entry.partInFlight = false
      },
    }
  }

  /**
   * `algorithm:hex` of the listed parts when the running digest covers exactly them
   * (parts 1..n in order, each the version hashed), otherwise null.
   */
  digestOf(
    uploadId: string,
    algorithm: DigestAlgorithm,
    parts: readonly { partNumber: number; etag: string }[],
  ): string | null {
    const running = this.#uploads.get(uploadId)
    if (running === undefined || running.broken || running.partInFlight) return null
    if (running.algorithm !== algorithm || parts.length !== running.etags.length) return null
    for (const [index, part] of parts.entries()) {
      if (
        part.partNumber !== index + 1 ||
        bareEtag(part.etag) !== bareEtag(running.etags[index] ?? '')
      ) {
        return null
      }
    }
    // A copy: a completion that fails later may be retried with the same parts.
    return `${algorithm}:${running.hash.copy().digest('hex')}`
  }

  forget(uploadId: string): void {
    this.#uploads.delete(uploadId)
  }

  #break(uploadId: string, running: Running): void {
    running.broken = true
    running.before = null
    // Kept (small) so that later parts do not start a new running digest.
    this.#uploads.set(uploadId, running)
  }

  #remember(uploadId: string, running: Running): void {
    if (this.#uploads.size >= MAX_RUNNING) {
      const oldest = this.#uploads.keys().next().value
      if (oldest !== undefined) this.#uploads.delete(oldest)
    }
    this.#uploads.set(uploadId, running)
  }
}
