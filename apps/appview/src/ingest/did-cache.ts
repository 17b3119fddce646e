// DID documents for the firehose's commit checks, kept between commits: without a cache
// @atproto/sync resolves the author's DID (a PLC request) for every commit it verifies.
// A stale key is no risk: a commit that fails verification is checked again with the
// document resolved afresh (parseCommitAuthenticated's forceKeyRefresh).
import { type DidDocument, MemoryCache } from '@atproto/identity'

/** @atproto/identity's MemoryCache, bounded: at `maxEntries` the oldest entry goes. */
export class BoundedDidCache extends MemoryCache {
  readonly #maxEntries: number

  constructor(options: { maxEntries: number; staleTtlMs: number }) {
    super(options.staleTtlMs)
    this.#maxEntries = options.maxEntries
  }

  override async cacheDid(did: string, doc: DidDocument): Promise<void> {
    this.cache.delete(did)
    if (this.cache.size >= this.#maxEntries) {
      const oldest = this.cache.keys().next().value
      if (oldest !== undefined) this.cache.delete(oldest)
    }
    await super.cacheDid(did, doc)
  }
}
