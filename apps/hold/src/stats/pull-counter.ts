// Pull counters, batched. A pull is counted in memory and the hold's stats records are
// written later, all pending repositories in one commit, so that a pull costs no commit
// (nor firehose event) on the request path. A flush is scheduled when the first pull after
// the previous flush arrives, `intervalMs` later: each repository's stats record changes
// at most once per interval because of pulls. Pending counts are written on close; a
// crash loses at most one interval of pulls (counters, not data).
import type { Logger } from '@atcr/core/log'
import type { HoldRepo } from '../pds/index.ts'
import { withRecordLock } from '../record-lock.ts'
import { getStats, statsWrite } from './index.ts'

interface Pending {
  ownerDid: string
  repository: string
  pulls: number
  lastPull: string
}

export interface PullCounterOptions {
  repo: HoldRepo
  logger: Logger
  /** The longest time a pull stays uncounted in the records; 0 writes at the next tick. */
  intervalMs: number
}

export class PullCounter {
  private readonly opts: PullCounterOptions
  private pending = new Map<string, Pending>()
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> = Promise.resolve()
  private closed = false

  constructor(opts: PullCounterOptions) {
    this.opts = opts
  }

  /** Counts one pull of the repository at `at` (ISO time). */
  count(ownerDid: string, repository: string, at: string): void {
    const key = keyOf(ownerDid, repository)
    const entry = this.pending.get(key)
    if (entry) {
      entry.pulls += 1
      if (at > entry.lastPull) entry.lastPull = at
    } else {
      this.pending.set(key, { ownerDid, repository, pulls: 1, lastPull: at })
    }
    this.schedule()
  }

  /** Pulls counted but not written yet for the repository. */
  pendingPulls(ownerDid: string, repository: string): number {
    return this.pending.get(keyOf(ownerDid, repository))?.pulls ?? 0
  }

  /** Drops the repository's unwritten pulls (its counter was just set to an absolute value). */
  forget(ownerDid: string, repository: string): void {
    this.pending.delete(keyOf(ownerDid, repository))
  }

  /** Drops the unwritten pulls of every repository of `ownerDid` (their data was erased). */
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
          batch.map(async ({ ownerDid, repository, pulls, lastPull }) => {
            const current = await getStats({ repo }, ownerDid, repository)
            const before = current?.value.pullCount
            const count = typeof before === 'number' && Number.isSafeInteger(before) ? before : 0
            const previous = current?.value.lastPull
            const latest = typeof previous === 'string' && previous > lastPull ? previous : lastPull
            return statsWrite(
              ownerDid,
              repository,
              current,
              { pullCount: Math.max(count, 0) + pulls, lastPull: latest },
              now,
            )
          }),
        )
        await repo.writer.applyWrites(writes)
      })
    } catch (err) {
      // Counted again with the pulls that arrive meanwhile; tried at the next flush.
      for (const entry of batch) {
        const key = keyOf(entry.ownerDid, entry.repository)
        const later = this.pending.get(key)
        if (later) {
          later.pulls += entry.pulls
          if (entry.lastPull > later.lastPull) later.lastPull = entry.lastPull
        } else {
          this.pending.set(key, entry)
        }
      }
      logger.error({ err, repositories: batch.length }, 'writing pull counters failed')
      if (!this.closed) this.schedule()
      else throw err
    }
  }
}

function keyOf(ownerDid: string, repository: string): string {
  return `${ownerDid}\n${repository}`
}
