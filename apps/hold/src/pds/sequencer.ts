import { EventEmitter } from 'node:events'
import { type Kysely, sql } from 'kysely'
import type { HoldSchema } from '../db/schema.ts'
import type { PendingEvent, SeqEventType } from './firehose/events.ts'
import { messageFrame } from './firehose/frames.ts'

/** A stored firehose event, its frame ready to send. */
export interface SeqEvent {
  seq: number
  type: SeqEventType
  time: string
  frame: Uint8Array
}

export interface SequencerOptions {
  /**
   * While subscribers wait, how often to look for events another process (the offline
   * CLI) committed to the same database. Events of this process are announced at once.
   */
  pollMs?: number
}

/**
 * The firehose's event log: events are appended inside the writer's transaction and
 * announced to subscribers only after that transaction commits.
 */
export class Sequencer {
  private readonly db: Kysely<HoldSchema>
  private readonly emitter = new EventEmitter()
  private readonly pollMs: number
  private headSeq = 0
  private closed = false
  private pollTimer: NodeJS.Timeout | undefined

  constructor(db: Kysely<HoldSchema>, opts: SequencerOptions = {}) {
    this.db = db
    this.pollMs = opts.pollMs ?? 1000
    this.emitter.setMaxListeners(0)
  }

  async init(): Promise<void> {
    this.headSeq = await this.readHead()
  }

  /** The seq of the newest event announced (0 when there is none). */
  get head(): number {
    return this.headSeq
  }

  get isClosed(): boolean {
    return this.closed
  }

  /** Stores events, numbering them; call inside the writer's transaction. */
  static async append(
    trx: Kysely<HoldSchema>,
    events: PendingEvent[],
    time = new Date().toISOString(),
  ): Promise<SeqEvent[]> {
    const stored: SeqEvent[] = []
    for (const { type, body } of events) {
      const { seq } = await trx
        .insertInto('repo_seq')
        .values({ event_type: type, frame: new Uint8Array(0), sequenced_at: time })
        .returning('seq')
        .executeTakeFirstOrThrow()
      const frame = messageFrame(`#${type}`, { ...body, seq, time })
      await trx.updateTable('repo_seq').set({ frame }).where('seq', '=', seq).execute()
      stored.push({ seq, type, time, frame })
    }
    return stored
  }

  /**
   * Makes the next event's seq greater than `floor` (never lower than it would be): after
   * a restore, the sequence must continue above any seq the old host handed out, or a
   * relay's saved cursor would be a FutureCursor. Call before the repo is opened.
   */
  static async raiseFloor(db: Kysely<HoldSchema>, floor: number): Promise<void> {
    // AUTOINCREMENT keeps the last seq in sqlite_sequence; it has no row before the first.
    await sql`INSERT INTO sqlite_sequence (name, seq) SELECT 'repo_seq', 0
      WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'repo_seq')`.execute(db)
    await sql`UPDATE sqlite_sequence SET seq = max(seq, ${Math.floor(floor)})
      WHERE name = 'repo_seq'`.execute(db)
  }

  /** Announces events whose transaction has committed. */
  announce(events: SeqEvent[]): void {
    const last = events.at(-1)
    if (!last || last.seq <= this.headSeq) return
    this.headSeq = last.seq
    this.emitter.emit('event', this.headSeq)
  }

  /**
   * Events after `seq`, oldest first: at most `limit` of them and, beyond the first, no
   * more than `maxBytes` of frames, so that a page of large commits stays small in memory.
   */
  async eventsAfter(seq: number, limit: number, maxBytes = 8 * 1024 * 1024): Promise<SeqEvent[]> {
    const sizes = await this.db
      .selectFrom('repo_seq')
      .select((eb) => ['seq', eb.fn<number>('length', ['frame']).as('size')])
      .where('seq', '>', seq)
      .orderBy('seq', 'asc')
      .limit(limit)
      .execute()
    let bytes = 0
    let through = seq
    for (const row of sizes) {
      if (through > seq && bytes + row.size > maxBytes) break
      bytes += row.size
      through = row.seq
    }
    if (through === seq) return []
    const rows = await this.db
      .selectFrom('repo_seq')
      .select(['seq', 'event_type', 'sequenced_at', 'frame'])
      .where('seq', '>', seq)
      .where('seq', '<=', through)
      .orderBy('seq', 'asc')
      .execute()
    return rows.map((r) => ({
      seq: r.seq,
      type: r.event_type as SeqEventType,
      time: r.sequenced_at,
      frame: r.frame,
    }))
  }

  /** The seq of the oldest event kept (0 when there is none). */
  async oldest(): Promise<number> {
    const row = await this.db
      .selectFrom('repo_seq')
      .select((eb) => eb.fn.min('seq').as('seq'))
      .executeTakeFirst()
    return Number(row?.seq ?? 0)
  }

  /**
   * Deletes the events sequenced before `before` (ISO time), always keeping the newest
   * one; returns how many went. Sequence numbers are never reused (AUTOINCREMENT).
   */
  async prune(before: string): Promise<number> {
    const newest = await this.readHead()
    const result = await this.db
      .deleteFrom('repo_seq')
      .where('sequenced_at', '<', before)
      .where('seq', '<', newest)
      .executeTakeFirst()
    return Number(result.numDeletedRows)
  }

  /** Calls `listener(head)` on every announcement; returns the unsubscribe function. */
  onEvent(listener: (head: number) => void): () => void {
    this.emitter.on('event', listener)
    return () => this.emitter.off('event', listener)
  }

  /** Resolves once an event after `seq` exists, or on abort or close. */
  waitForEvent(seq: number, signal?: AbortSignal): Promise<void> {
    if (this.headSeq > seq || this.closed || signal?.aborted) return Promise.resolve()
    return new Promise((resolve) => {
      const done = () => {
        this.emitter.off('event', onEvent)
        this.emitter.off('close', done)
        signal?.removeEventListener('abort', done)
        this.stopPollingIfIdle()
        resolve()
      }
      const onEvent = (head: number) => {
        if (head > seq) done()
      }
      this.emitter.on('event', onEvent)
      this.emitter.once('close', done)
      signal?.addEventListener('abort', done, { once: true })
      this.startPolling()
    })
  }

  /** Ends every wait; subscribers see the close and finish. */
  close(): void {
    this.closed = true
    clearInterval(this.pollTimer)
    this.pollTimer = undefined
    this.emitter.emit('close')
  }

  private async readHead(): Promise<number> {
    const row = await this.db
      .selectFrom('repo_seq')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .executeTakeFirst()
    return Number(row?.seq ?? 0)
  }

  private startPolling(): void {
    if (this.pollTimer || this.closed) return
    this.pollTimer = setInterval(() => {
      this.readHead().then(
        (head) => {
          if (head > this.headSeq) {
            this.headSeq = head
            this.emitter.emit('event', head)
          }
        },
        () => undefined,
      )
    }, this.pollMs)
    this.pollTimer.unref()
  }

  private stopPollingIfIdle(): void {
    if (this.pollTimer && this.emitter.listenerCount('close') === 0) {
      clearInterval(this.pollTimer)
      this.pollTimer = undefined
    }
  }
}
