// Pull and push counters, batched. A pull, and a push that adds no layer record (a manifest
// the hold already knows, pushed again under a new tag), is counted in memory and the
// hold's stats records are written later, all pending repositories in one commit, so that
// it costs no commit (nor firehose event) on the request path. A flush is scheduled when
// the first count after the previous flush arrives, `intervalMs` later: each repository's
// stats record changes at most once per interval because of these counts. Pending counts
// are written on close; a crash loses at most one interval of them (counters, not data).
import type { Logger } from '@atcr/core/log'
import type { HoldRepo } from '../pds/index.ts'
import { withRecordLock } from '../record-lock.ts'
import { getStats, type StatsEntry, statsWrite, storedCount } from './index.ts'

export type CountedOperation = 'pull' | 'push'

/** Counts of one repository waiting to be written, with the latest time of each. */
interface Pending {
  ownerDid: string
  repository: string
  pulls: number
  pushes: number
  lastPull?: string
  lastPush?: string
}

export interface StatsCounterOptions {
  repo: HoldRepo
  logger: Logger
  /** The longest time a count stays unwritten in the records; 0 writes at the next tick. */
  intervalMs: number
}

export class StatsCounter {
  private readonly opts: StatsCounterOptions
  private pending = new Map<string, Pending>()
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()
  private closed = false

  constructor(opts: StatsCounterOptions) {
    this.opts = opts
  }

  /** Counts one pull or push of the repository at `at` (ISO time). */
  count(ownerDid: string, repository: string, operation: CountedOperation, at: string): void {
    const key = keyOf(ownerDid, repository)
    let entry = this.pending.get(key)
    if (!entry) {
      entry = { ownerDid, repository, pulls: 0, pushes: 0 }
      this.pending.set(key, entry)
    }
    merge(entry, operation === 'pull' ? { pulls: 1, lastPull: at } : { pushes: 1, lastPush: at })
    this.schedule()
  }

  /** Counts of the repository not written yet. */
  unwritten(ownerDid: string, repository: string): { pulls: number; pushes: number } {
    const entry = this.pending.get(keyOf(ownerDid, repository))
    return { pulls: entry?.pulls ?? 0, pushes: entry?.pushes ?? 0 }
  }

  /** Drops the repository's unwritten counts of `operation` (just set to an absolute value). */
  forget(ownerDid: string, repository: string, operation: CountedOperation): void {
    const key = keyOf(ownerDid, repository)
    const entry = this.pending.get(key)
    if (!entry) return
    if (operation === 'pull') {
      entry.pulls = 0
      entry.lastPull = undefined
    } else {
      entry.pushes = 0
      entry.lastPush = undefined
    }
    if (entry.pulls === 0 && entry.pushes === 0) this.pending.delete(key)
  }

  /** Drops the unwritten counts of every repository of `ownerDid` (their data was erased). */
  forgetOwner(ownerDid: string): void {
    for (const [key, entry] of this.pending) {
      if (entry.ownerDid === ownerDid) this.pending.delete(key)
    }
  }

  /** Writes every pending count now (one commit); resolves when written. */
  flush(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    this.flushing = this.flushing.catch(() => undefined).then(() => this.write())
    return this.flushing
  }

  /** Stops the timer and writes what is pending. */
  async close(): Promise<void> {
    this.closed = true
    await this.flush()
  }

  private schedule(): void {
    if (this.timer || this.closed) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.flush().catch(() => undefined)
    }, this.opts.intervalMs)
    this.timer.unref()
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0) return
    const batch = [...this.pending.values()]
    this.pending = new Map()
    const { repo, logger } = this.opts
    try {
      await withRecordLock({ repo }, async () => {
        const now = new Date().toISOString()
        const writes = await Promise.all(
          batch.map(async (entry) => {
            const current = await getStats({ repo }, entry.ownerDid, entry.repository)
            return statsWrite(entry.ownerDid, entry.repository, current, added(current, entry), now)
          }),
        )
        await repo.writer.applyWrites(writes)
      })
    } catch (err) {
      // Counted again with those that arrive meanwhile; tried at the next flush.
      for (const entry of batch) {
        const key = keyOf(entry.ownerDid, entry.repository)
        const later = this.pending.get(key)
        if (later) merge(later, entry)
        else this.pending.set(key, entry)
      }
      logger.error({ err, repositories: batch.length }, 'writing stats counters failed')
      if (!this.closed) this.schedule()
      else throw err
    }
  }
}

/** The stored counters plus the pending ones; a time moves only forward. */
function added(current: StatsEntry | null, entry: Pending) {
  const value = current?.value
  return {
    ...(entry.pulls > 0
      ? {
          pullCount: storedCount(value?.pullCount) + entry.pulls,
          lastPull: latest(value?.lastPull, entry.lastPull),
        }
      : {}),
    ...(entry.pushes > 0
      ? {
          pushCount: storedCount(value?.pushCount) + entry.pushes,
          lastPush: latest(value?.lastPush, entry.lastPush),
        }
      : {}),
  }
}

function merge(into: Pending, counts: Partial<Pending>): void {
  into.pulls += counts.pulls ?? 0
  into.pushes += counts.pushes ?? 0
  into.lastPull = latest(into.lastPull, counts.lastPull)
  into.lastPush = latest(into.lastPush, counts.lastPush)
}

function latest(a: unknown, b: string | undefined): string | undefined {
  const stamp = typeof a === 'string' ? a : undefined
  if (stamp === undefined || b === undefined) return b ?? stamp
  return stamp > b ? stamp : b
}

function keyOf(ownerDid: string, repository: string): string {
  return `${ownerDid}\n${repository}`
}
