// Handles that did not resolve, remembered briefly: a token request naming unknown
// identities costs their lookups once, not again on every repeat.
export interface FailedLookupsOptions {
  ttlMs: number
  /** Most handles remembered at once; the oldest go first. */
  maxEntries?: number
  now?: () => number
}

export class FailedLookups {
  readonly #failed = new Map<string, number>()
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(options: FailedLookupsOptions) {
    this.#ttlMs = options.ttlMs
    this.#maxEntries = options.maxEntries ?? 10_000
    this.#now = options.now ?? Date.now
  }

  /** `resolve` wrapped: a handle that failed within the TTL fails again without a lookup. */
  wrap(resolve: (handle: string) => Promise<string>): (handle: string) => Promise<string> {
    return async (input) => {
      const handle = input.toLowerCase()
      const until = this.#failed.get(handle)
      if (until !== undefined) {
        if (until > this.#now()) throw new Error(`${handle} did not resolve a moment ago`)
        this.#failed.delete(handle)
      }
      try {
        return await resolve(handle)
      } catch (error) {
        this.#remember(handle)
        throw error
      }
    }
  }

  #remember(handle: string): void {
    if (this.#ttlMs <= 0) return
    this.#failed.delete(handle)
    this.#failed.set(handle, this.#now() + this.#ttlMs)
    while (this.#failed.size > this.#maxEntries) {
      const oldest = this.#failed.keys().next().value
      if (oldest === undefined) break
      this.#failed.delete(oldest)
    }
  }
}
