// Hold health: every hold this AppView pushes to is probed at `/xrpc/_health` on an interval,
// and the result (status, latency, the error) is recorded in the database, where every
// instance sees it. A push to a hold whose last check failed, recently enough to be
// believed, is refused with a 503 naming the hold instead of failing halfway.
import type { Logger } from '@atcr/core/log'
import { OciError } from '@atcr/core/oci'
import type { AppViewDatabase } from '../db/index.ts'
import type { Hold } from './hold-client.ts'
import { type HoldHealthRow, HoldHealthStore } from './hold-health-store.ts'

export interface HoldStatus {
  did: string
  endpoint: string
  status: HoldHealthRow['status']
  latencyMs: number | null
  error: string | null
  /** When it was last checked (Unix ms; 0: not yet). */
  checkedAt: number
  /** Since when it has had this status. */
  since: number
}

export interface HoldHealthOptions {
  db: AppViewDatabase
  fetch: (input: string, init?: RequestInit) => Promise<Response>
  /** Milliseconds between checks; 0 turns checking (and refusing) off. */
  intervalMs: number
  logger: Logger
  now?: () => number
}

/** A probe slower than this (or the interval, if shorter) counts as failed. */
const TIMEOUT_MS = 5000
/** A failed check older than this many intervals is no longer believed. */
const STALE_INTERVALS = 3

export class HoldHealth {
  readonly #store: HoldHealthStore
  readonly #fetch: HoldHealthOptions['fetch']
  readonly #intervalMs: number
  readonly #logger: Logger
  readonly #now: () => number
  /** Holds this process has started watching (so a push writes nothing more). */
  readonly #watched = new Set<string>()
  #timer: NodeJS.Timeout | null = null
  #running: Promise<void> = Promise.resolve()

  constructor(options: HoldHealthOptions) {
    this.#store = new HoldHealthStore(options.db)
    this.#fetch = options.fetch
    this.#intervalMs = options.intervalMs
    this.#logger = options.logger
    this.#now = options.now ?? Date.now
    if (this.#intervalMs > 0) {
      this.#timer = setInterval(() => {
        this.#running = this.#running.then(() => this.checkAll())
      }, this.#intervalMs)
      this.#timer.unref()
    }
  }

  get enabled(): boolean {
    return this.#intervalMs > 0
  }

  /** Watches a hold from now on; the first time, it is checked at once. */
  async watch(hold: Hold): Promise<void> {
    if (!this.enabled || this.#watched.has(hold.did)) return
    this.#watched.add(hold.did)
    await this.#store.watch(hold.did, hold.endpoint, this.#now())
    this.#running = this.#running
      .then(() => this.check(hold))
      .then(
        () => {},
        (error: unknown) =>
          this.#logger.warn({ err: error, hold: hold.did }, 'checking a hold failed'),
      )
  }

  /** Checks every watched hold once. */
  async checkAll(): Promise<void> {
    try {
      const rows = await this.#store.list()
      await Promise.all(
        rows.map((row) => this.check({ did: row.hold_did, endpoint: row.endpoint })),
      )
    } catch (error) {
      this.#logger.warn({ err: error }, 'checking holds failed')
    }
  }

  /**
   * Probes one hold's /xrpc/_health and records what it found. A failed probe is tried once
   * more at once: a hold is marked down after two failures in a row, not after one answer
   * that came late while it (or this AppView) was busy.
   */
  async check(hold: Hold): Promise<HoldStatus> {
    let probe = await this.#probe(hold)
    if (probe.error !== null) probe = await this.#probe(hold)
    const { error, latency } = probe
    const status = error === null ? 'up' : 'down'
    const before = await this.#store.get(hold.did)
    await this.#store.record(
      {
        hold_did: hold.did,
        endpoint: hold.endpoint,
        status,
        latency_ms: error === null ? latency : null,
        error,
      },
      this.#now(),
    )
    if (before?.status !== status) {
      const log = { hold: hold.did, endpoint: hold.endpoint, latencyMs: latency, error }
      if (status === 'down') this.#logger.warn(log, 'hold is down')
      else this.#logger.info(log, 'hold is up')
    }
    const row = await this.#store.get(hold.did)
    return statusOf(row!)
  }

  /** One request to /xrpc/_health: why it failed (null: it answered 2xx), and how long it took. */
  async #probe(hold: Hold): Promise<{ error: string | null; latency: number }> {
    const started = performance.now()
    let error: string | null = null
    try {
      const response = await this.#fetch(new URL('/xrpc/_health', hold.endpoint).href, {
        signal: AbortSignal.timeout(Math.min(TIMEOUT_MS, this.#intervalMs || TIMEOUT_MS)),
        redirect: 'error',
      })
      await response.body?.cancel()
      if (!response.ok) error = `/xrpc/_health answered ${response.status}`
    } catch (cause) {
      const reason = cause instanceof Error ? (cause.cause ?? cause) : cause
      error = `/xrpc/_health failed: ${reason instanceof Error ? reason.message : String(reason)}`
    }
    return { error, latency: Math.round(performance.now() - started) }
  }

  /** The recorded status of every watched hold (for the web UI and operators). */
  async statuses(): Promise<HoldStatus[]> {
    return (await this.#store.list()).map(statusOf)
  }

  /** Throws 503 UNAVAILABLE, naming the hold, when its last check failed recently. */
  async assertUp(hold: Hold): Promise<void> {
    if (!this.enabled) return
    const row = await this.#store.get(hold.did)
    if (row?.status !== 'down') return
    if (row.checked_at < this.#now() - STALE_INTERVALS * this.#intervalMs) return
    throw new OciError('UNAVAILABLE', {
      message: `hold ${hold.did} (${hold.endpoint}) is down: ${row.error ?? 'its health check failed'} (checked ${new Date(row.checked_at).toISOString()}); pushes to it are refused until it answers again`,
    })
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await this.#running.catch(() => {})
  }
}

function statusOf(row: HoldHealthRow): HoldStatus {
  return {
    did: row.hold_did,
    endpoint: row.endpoint,
    status: row.status,
    latencyMs: row.latency_ms,
    error: row.error,
    checkedAt: row.checked_at,
    since: row.changed_at,
  }
}
