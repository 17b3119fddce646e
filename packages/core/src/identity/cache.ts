export interface TtlCacheOptions {
  ttlMs: number
  maxEntries: number
  /** Told of every lookup (`get`, `getOrLoad`): whether a fresh value answered it. */
  counter?: CacheCounter
}

/** Counts a cache's hits and misses (the services' metrics give each cache one). */
export interface CacheCounter {
  hit(): void
  miss(): void
}

interface Entry<V> {
  value: V
  storedAt: number
}

/**
 * A small in-memory cache with a time to live and a size bound (least recently used entries
 * go first). Also collapses concurrent loads of the same key into one.
 */
export class TtlCache<V> {
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #entries = new Map<string, Entry<V>>()
  readonly #pending = new Map<string, Promise<V>>()
  readonly #now: () => number
  readonly #counter: CacheCounter | undefined

  constructor(options: TtlCacheOptions, now: () => number = Date.now) {
    if (!(options.ttlMs >= 0)) throw new RangeError('ttlMs must be >= 0')
    if (!(options.maxEntries >= 1)) throw new RangeError('maxEntries must be >= 1')
    this.#ttlMs = options.ttlMs
    this.#maxEntries = options.maxEntries
    this.#now = now
    this.#counter = options.counter
  }

  get size(): number {
    return this.#entries.size
  }

  /** The fresh value and when it was stored, or undefined (expired entries are dropped). */
  peek(key: string): Entry<V> | undefined {
    const entry = this.#entries.get(key)
    if (!entry) return undefined
    if (this.#now() - entry.storedAt >= this.#ttlMs) {
      this.#entries.delete(key)
      return undefined
    }
    // Re-insert to mark it most recently used.
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    return entry
  }

  get(key: string): V | undefined {
    const value = this.peek(key)?.value
    if (value === undefined) this.#counter?.miss()
    else this.#counter?.hit()
    return value
  }

  set(key: string, value: V): void {
    this.#entries.delete(key)
    this.#entries.set(key, { value, storedAt: this.#now() })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next()
      if (oldest.done) break
      this.#entries.delete(oldest.value)
    }
  }

  delete(key: string): void {
    this.#entries.delete(key)
  }

  clear(): void {
    this.#entries.clear()
  }

  /**
   * The cached value, or the result of `load` (stored on success). With `force`, the
   * cached value is ignored. Concurrent calls for one key share one `load`.
   */
  async getOrLoad(key: string, load: () => Promise<V>, force = false): Promise<V> {
    if (force) this.#counter?.miss()
    else {
      const hit = this.get(key)
      if (hit !== undefined) return hit
    }
    const inFlight = this.#pending.get(key)
    if (inFlight) return inFlight
    const promise = load().then((value) => {
      this.set(key, value)
      return value
    })
    this.#pending.set(key, promise)
    try {
      return await promise
    } finally {
      this.#pending.delete(key)
    }
  }
}
