// Garbage collection started from the admin pages runs in the background (a hold with many
// blobs takes a while); the GC page shows its progress and then its report. One at a time.
import { randomUUID } from 'node:crypto'
import type { GcProgress, GcReport } from '../gc/index.ts'

export interface GcJob {
  id: string
  dryRun: boolean
  startedAt: string
  progress: GcProgress
  report: GcReport | null
  error: string | null
}

export class GcBusyError extends Error {
  override readonly name = 'GcBusyError'
}

export class GcJobs {
  #latest: GcJob | null = null
  #running: Promise<void> | null = null

  /** The running job, or the last one finished (its report or error). */
  get latest(): GcJob | null {
    return this.#latest
  }

  get running(): boolean {
    return this.#running !== null
  }

  /** Starts `collect` in the background; GcBusyError while another runs. */
  start(
    dryRun: boolean,
    collect: (onProgress: (progress: GcProgress) => void) => Promise<GcReport>,
  ): GcJob {
    if (this.#running) throw new GcBusyError('A garbage collection is running')
    const job: GcJob = {
      id: randomUUID(),
      dryRun,
      startedAt: new Date().toISOString(),
      progress: { phase: 'scanning', blobsScanned: 0, candidates: 0, handled: 0 },
      report: null,
      error: null,
    }
    this.#latest = job
    this.#running = collect((progress) => {
      job.progress = progress
    })
      .then((report) => {
        job.report = report
      })
      .catch((error: unknown) => {
        job.error = error instanceof Error ? error.message : String(error)
      })
      .finally(() => {
        this.#running = null
      })
    return job
  }

  /** Waits for the running job, if any (shutdown, tests). */
  async settled(): Promise<void> {
    await this.#running
  }
}
