// The serving hold's garbage collections, one at a time, whoever starts them (the admin
// pages, in the background with progress; POST /admin/api/gc, waiting for the report).
// Each last check and delete runs under the record lock, as notifyManifest's writes do.
import { randomUUID } from 'node:crypto'
import type { Logger } from '@atcr/core/log'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../db/schema.ts'
import type { StorageDriver } from '../storage/index.ts'
import { collectGarbage, type GcProgress, type GcReport } from './index.ts'

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

export interface GcRunnerOptions {
  db: Kysely<HoldSchema>
  storage: StorageDriver
  gracePeriod: number
  logger: Logger
  lock: <T>(task: () => Promise<T>) => Promise<T>
}

export class GcRunner {
  readonly #options: GcRunnerOptions
  #latest: GcJob | null = null
  #running: Promise<GcReport> | null = null

  constructor(options: GcRunnerOptions) {
    this.#options = options
  }

  /** The running job, or the last one finished (its report or error). */
  get latest(): GcJob | null {
    return this.#latest
  }

  get running(): boolean {
    return this.#running !== null
  }

  /** Starts a collection in the background; GcBusyError while another runs. */
  start(dryRun: boolean): GcJob {
    this.#begin(dryRun)
    return this.#latest as GcJob
  }

  /** Runs a collection and answers its report; GcBusyError while another runs. */
  run(dryRun: boolean): Promise<GcReport> {
    return this.#begin(dryRun)
  }

  /** Waits for the running collection, if any (shutdown, tests). */
  async settled(): Promise<void> {
    await this.#running?.catch(() => {})
  }

  #begin(dryRun: boolean): Promise<GcReport> {
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
    const { db, storage, gracePeriod, logger, lock } = this.#options
    const running = collectGarbage(
      { db, storage, gracePeriod, logger, lock },
      {
        dryRun,
        onProgress: (progress) => {
          job.progress = progress
        },
      },
    )
    this.#running = running
    running
      .then(
        (report) => {
          job.report = report
        },
        (error: unknown) => {
          job.error = error instanceof Error ? error.message : String(error)
        },
      )
      .finally(() => {
        this.#running = null
      })
    return running
  }
}
