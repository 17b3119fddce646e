// The hold's own gauges, read from its database at each scrape (no walk of the storage).
import type { HoldContext } from './context.ts'
import { storedBlobs } from './layers/index.ts'
import { countUploadsByState } from './uploads/store.ts'

export function registerHoldMetrics(ctx: HoldContext): void {
  const { metrics } = ctx
  // One query serves both gauges of a scrape.
  let stored: Promise<{ blobs: number; bytes: number }> | null = null
  const readStored = () => {
    stored ??= storedBlobs(ctx.db.db).finally(() => {
      stored = null
    })
    return stored
  }
  metrics.gauge(
    'atcr_hold_stored_blobs',
    'Blobs the hold stores: digests its layer records name, and completed uploads no push names yet.',
    [],
    async () => [{ value: (await readStored()).blobs }],
  )
  metrics.gauge(
    'atcr_hold_stored_bytes',
    'Bytes of the blobs counted by atcr_hold_stored_blobs, each digest once.',
    [],
    async () => [{ value: (await readStored()).bytes }],
  )
  metrics.gauge(
    'atcr_upload_sessions',
    'Multipart blob uploads in progress, by state (open, completing, aborting).',
    ['state'],
    async () =>
      (await countUploadsByState(ctx.db)).map(({ state, count }) => ({
        labels: { state },
        value: count,
      })),
  )
}
