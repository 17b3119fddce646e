// The crew as the admin pages show it: every member (bounded), their usage against their
// tier's limit, and who the hold owner is.
import { type CrewRecord, NSID } from '@atcr/core/lexicons'
import { getCaptain } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { listCrewRequests } from '../crew/requests.ts'
import { defaultTier, listTiers, type Tier, tierByName } from '../quota/index.ts'
import { handlesOf } from './overview.ts'
import { usageByUser } from './usage-store.ts'

/** Crew records shown at most (a page's bound). */
export const CREW_SHOWN = 1000
const PAGE = 100

/** Roles the admin pages assign (the owner's is fixed). */
export const ASSIGNABLE_ROLES = ['member', 'read', 'write', 'admin'] as const

export interface CrewRow {
  member: string
  handle: string | null
  role: string
  permissions: string[]
  tier: string | null
  /** The tier that applies (the named one, or the default). */
  effectiveTier: Tier | null
  addedAt: string
  isOwner: boolean
  usageBytes: number
  /** Usage as a percentage of the tier's limit; null when unlimited. */
  usagePercent: number | null
}

export async function loadCrew(
  ctx: HoldContext,
): Promise<{ rows: CrewRow[]; truncated: boolean; requests: PendingRow[] }> {
  const records: CrewRecord[] = []
  let cursor: string | undefined
  let truncated = false
  for (;;) {
    const page = await ctx.repo.reader.listRecords({
      collection: NSID.holdCrew,
      limit: PAGE,
      reverse: true,
      ...(cursor === undefined ? {} : { cursor }),
    })
    for (const record of page) records.push(record.value as unknown as CrewRecord)
    if (records.length >= CREW_SHOWN) {
      truncated = page.length === PAGE
      break
    }
    if (page.length < PAGE) break
    cursor = page[page.length - 1]?.rkey
  }
  const [captain, usage] = await Promise.all([getCaptain(ctx), usageByUser(ctx.db.db)])
  const bytes = new Map(usage.map((u) => [u.did, u.totalSize]))
  const pending = await listCrewRequests(ctx.db)
  const handles = await handlesOf(ctx, [
    ...records.map((r) => r.member),
    ...pending.map((r) => r.did),
  ])
  const rows = records.slice(0, CREW_SHOWN).map((record): CrewRow => {
    const isOwner = record.member === captain.owner
    const tierName = typeof record.tier === 'string' ? record.tier : null
    const effectiveTier = isOwner
      ? null
      : ((tierName ? tierByName(ctx.config, tierName) : null) ?? defaultTier(ctx.config))
    const usageBytes = bytes.get(record.member) ?? 0
    const limit = effectiveTier?.limit ?? null
    return {
      member: record.member,
      handle: handles.get(record.member) ?? null,
      role: record.role,
      permissions: Array.isArray(record.permissions) ? record.permissions : [],
      tier: tierName,
      effectiveTier,
      addedAt: record.addedAt,
      isOwner,
      usageBytes,
      usagePercent: limit ? Math.round((usageBytes / limit) * 1000) / 10 : null,
    }
  })
  const requests = pending.map((r) => ({
    ...r,
    handle: handles.get(r.did) ?? null,
    requestedAt: new Date(r.requestedAt).toISOString(),
  }))
  return { rows, truncated, requests }
}

export interface PendingRow {
  did: string
  handle: string | null
  role: string
  permissions: string[]
  requestedAt: string
}

export { listTiers }
