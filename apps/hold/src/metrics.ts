// The hold's own gauges, read from its database at each scrape (no walk of the storage).
// The storage and quota gauges sum the layer records: a scrape costs a query over them.
import { openUploads, referencedStorage } from './admin/usage-store.ts'
import type { HoldContext } from './context.ts'
import { quotaUseByTier, type TierUse } from './quota/index.ts'

/**
 * `read` once per scrape, however many gauges use it: the gauges of one registry are
 * collected together, so a read still in flight is shared.
 */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null
  return () => {
    pending ??= read().finally(() => {
      pending = null
    })
    return pending
  }
}

export function registerHoldMetrics(ctx: HoldContext): void {
  const { metrics } = ctx
  const db = ctx.db.db
  const stored = shared(() => referencedStorage(db))
  metrics.gauge(
    'atcr_hold_stored_blobs',
    'Blobs the layer records name (each digest once): what the hold stores for pushes.',
    [],
    async () => [{ value: (await stored()).blobs }],
  )
  metrics.gauge(
    'atcr_hold_stored_bytes',
    'Bytes of the blobs the layer records name, each digest counted once.',
    [],
    async () => [{ value: (await stored()).bytes }],
  )
  const uploads = shared(() => openUploads(db))
  metrics.gauge(
    'atcr_upload_sessions',
    'Multipart blob uploads in progress on this hold.',
    [],
    async () => [{ value: (await uploads()).count }],
  )
  metrics.gauge(
    'atcr_hold_upload_parts_bytes',
    'Bytes of the parts stored so far by the uploads in progress.',
    [],
    async () => [{ value: (await uploads()).bytes }],
  )
  const quota = shared(() => quotaUseByTier(ctx))
  const perTier = (value: (use: TierUse) => number) => async () =>
    (await quota()).map((use) => ({ labels: { tier: use.tier.name }, value: value(use) }))
  metrics.gauge(
    'atcr_hold_quota_users',
    'Accounts of each quota tier (crew members and pushers, the owner left out).',
    ['tier'],
    perTier((use) => use.users),
  )
  metrics.gauge(
    'atcr_hold_quota_used_bytes',
    "Bytes the accounts of each quota tier use (each account's digests counted once).",
    ['tier'],
    perTier((use) => use.usedBytes),
  )
  metrics.gauge(
    'atcr_hold_quota_limit_reached_users',
    'Accounts of each quota tier at or over its limit: their pushes of new blobs are refused.',
    ['tier'],
    perTier((use) => use.atLimit),
  )
}
