// What both consumers share: the changes of one stream position (a firehose commit, a
// Jetstream event) are applied together with the source's cursor in one transaction, so a
// consumer that stops anywhere resumes exactly after the last position it applied: no gap,
// no change applied twice. Positions without indexed changes only move the cursor, written
// at most once a second.
import type { Logger } from '@atcr/core/log'
import type { RecordChange } from './apply.ts'
import type { IndexService } from './index-service.ts'

/** One position of a stream: its number, when it happened, what it changed. */
export interface StreamEvent {
  position: number
  /** When the event happened at its source (ms since the epoch). */
  time: number
  changes: RecordChange[]
  /** DIDs whose identity (handle, PDS, keys) changed. */
  identities: string[]
}

export interface StreamSinkOptions {
  source: string
  index: IndexService
  /** Called after an #identity event's position was applied. */
  onIdentity: (did: string) => Promise<void>
  logger: Logger
  now: () => number
}

const IDLE_CURSOR_WRITE_MS = 1000

export class StreamSink {
  readonly source: string
  readonly #index: IndexService
  readonly #onIdentity: StreamSinkOptions['onIdentity']
  readonly #logger: Logger
  readonly #now: () => number
  #pending: StreamEvent | null = null
  #applied: number | null = null
  #cursorWrittenAt = 0
  #cursorWritten: number | null = null
  #lastTime: number | null = null
  #lastAppliedAt: number | null = null
  #chain: Promise<void> = Promise.resolve()
  #scheduled = false

  constructor(options: StreamSinkOptions) {
    this.source = options.source
    this.#index = options.index
    this.#onIdentity = options.onIdentity
    this.#logger = options.logger
    this.#now = options.now
  }

  /** Reads the stored cursor; the position to resume after (null: start live). */
  async load(): Promise<number | null> {
    this.#applied = await this.#index.cursor(this.source)
    this.#cursorWritten = this.#applied
    return this.#applied
  }

  /** The last position applied (or stored, before any was applied). */
  get cursor(): number | null {
    return this.#applied
  }

  /**
   * How far behind its source the index was when it applied the last event, in ms (the
   * event's age then); null before the first event.
   */
  get lagMs(): number | null {
    if (this.#lastTime === null || this.#lastAppliedAt === null) return null
    return Math.max(0, this.#lastAppliedAt - this.#lastTime)
  }

  /**
   * Adds what happened at a position. A new position first applies the pending one; the
   * last one is applied once the current turn of the event loop is over.
   */
  async add(
    position: number,
    time: number,
    change: { change?: RecordChange; identity?: string },
  ): Promise<void> {
    if (this.#applied !== null && position <= this.#applied) return
    if (this.#pending && this.#pending.position !== position) await this.flush()
    this.#pending ??= { position, time, changes: [], identities: [] }
    if (change.change) this.#pending.changes.push(change.change)
    if (change.identity) this.#pending.identities.push(change.identity)
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => {
        this.#scheduled = false
        this.flush().catch(() => {})
      })
    }
  }

  /** Applies the pending position (one at a time); rejects when the database failed. */
  flush(): Promise<void> {
    const run = this.#chain.then(() => this.#applyPending())
    this.#chain = run.catch(() => {})
    return run
  }

  async #applyPending(): Promise<void> {
    const event = this.#pending
    if (!event) return
    const now = this.#now()
    const cursor = { source: this.source, cursor: event.position }
    if (event.changes.length > 0) {
      await this.#index.applyBatch(event.changes, cursor)
      this.#cursorWritten = event.position
      this.#cursorWrittenAt = now
    } else if (now - this.#cursorWrittenAt >= IDLE_CURSOR_WRITE_MS) {
      await this.#index.applyBatch([], cursor)
      this.#cursorWritten = event.position
      this.#cursorWrittenAt = now
    }
    this.#pending = null
    this.#applied = event.position
    this.#lastTime = event.time
    this.#lastAppliedAt = now
    for (const did of event.identities) {
      await this.#onIdentity(did).catch((error: unknown) => {
        this.#logger.warn({ err: error, did }, 'refreshing an identity failed')
      })
    }
  }

  /** Forgets the pending position (its events will be read again from the cursor). */
  discardPending(): void {
    this.#pending = null
  }

  /** Applies what is pending and writes the cursor even if it was written less than 1 s ago. */
  async close(): Promise<void> {
    await this.flush()
    if (this.#applied !== null && this.#applied !== this.#cursorWritten) {
      await this.#index.applyBatch([], { source: this.source, cursor: this.#applied })
      this.#cursorWritten = this.#applied
    }
  }
}
