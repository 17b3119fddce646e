// Storage quotas. Tiers come from config (quota.tiers, in rank order; quota.default_tier
// or else the first is what new crew members get). A crew member's tier is the `tier`
// field of their crew record; a missing or unknown name means the default tier. The owner
// is never limited, and a hold without tiers limits nobody. Usage is summed over the
// user's layer records, each digest once (see layers/).
import { UsageError } from '@atcr/core/cli'
import type { GetQuotaOutput, TierInfo } from '@atcr/core/lexicons'
import { getCaptain, getCrewMember } from '../access/index.ts'
import { crewTiers, usageByUser } from '../admin/usage-store.ts'
import type { HoldConfig } from '../config.ts'
import type { HoldContext } from '../context.ts'
import { type LayerUsage, usageOf } from '../layers/index.ts'

/** One configured tier. `limit` null: unlimited. */
export interface Tier {
  name: string
  rank: number
  limit: number | null
  description: string
  isDefault: boolean
}

/** What limits a user: their tier (null when no tiers apply) and its byte limit. */
export interface QuotaPolicy {
  tier: Tier | null
  /** Bytes; null for no limit. */
  limit: number | null
}

/** The outcome of adding blobs to a user's storage. */
export interface QuotaCheck {
  allowed: boolean
  policy: QuotaPolicy
  usage: LayerUsage
  /** Bytes of the added digests the user does not store yet. */
  addedBytes: number
  /** How many of the added digests are new to the user. */
  addedBlobs: number
}

/** Tier settings that cannot work: a config error (exit code 2 at start). */
export class QuotaConfigError extends UsageError {
  override name = 'QuotaConfigError'
}

/** The configured tiers in rank order. */
export function listTiers(config: Pick<HoldConfig, 'quota'>): Tier[] {
  const { tiers, default_tier } = config.quota
  const defaultIndex = default_tier === null ? 0 : tiers.findIndex((t) => t.name === default_tier)
  return tiers.map((tier, rank) => ({
    name: tier.name,
    rank,
    limit: tier.limit,
    description: tier.description,
    isDefault: rank === defaultIndex,
  }))
}

/** Refuses tier settings that cannot work: duplicate names, a default tier that is not listed. */
export function checkTierConfig(config: Pick<HoldConfig, 'quota'>): void {
  const { tiers, default_tier } = config.quota
  const names = new Set<string>()
  for (const tier of tiers) {
    if (names.has(tier.name))
      throw new QuotaConfigError(`quota.tiers: ${tier.name} is listed twice`)
    names.add(tier.name)
  }
  if (default_tier !== null && !names.has(default_tier)) {
    throw new QuotaConfigError(`quota.default_tier: no tier is named ${default_tier}`)
  }
}

/** The tier of new crew members, or null when no tiers are configured. */
export function defaultTier(config: Pick<HoldConfig, 'quota'>): Tier | null {
  return listTiers(config).find((t) => t.isDefault) ?? null
}

export function tierByRank(config: Pick<HoldConfig, 'quota'>, rank: number): Tier | null {
  return listTiers(config)[rank] ?? null
}

export function tierByName(config: Pick<HoldConfig, 'quota'>, name: string): Tier | null {
  return listTiers(config).find((t) => t.name === name) ?? null
}

/** A tier as io.atcr.hold.listTiers describes it (no `limit`: unlimited). */
export function toTierInfo(tier: Tier): TierInfo {
  return {
    name: tier.name,
    rank: tier.rank,
    default: tier.isDefault,
    ...(tier.description ? { description: tier.description } : {}),
    ...(tier.limit === null ? {} : { limit: tier.limit }),
  }
}

/** The tier and limit of `did`: unlimited for the owner, else their crew tier or the default. */
export async function quotaPolicyOf(ctx: HoldContext, did: string): Promise<QuotaPolicy> {
  const captain = await getCaptain(ctx)
  if (captain.owner === did) return { tier: null, limit: null }
  if (ctx.config.quota.tiers.length === 0) return { tier: null, limit: null }
  const crew = await getCrewMember(ctx, did)
  const named =
    typeof crew?.value.tier === 'string' ? tierByName(ctx.config, crew.value.tier) : null
  const tier = named ?? defaultTier(ctx.config)
  return { tier, limit: tier?.limit ?? null }
}

/** How a tier's accounts use their quota (crew members and pushers; never the owner). */
export interface TierUse {
  tier: Tier
  users: number
  usedBytes: number
  /** Accounts at or over the tier's limit: their pushes of new blobs are refused. */
  atLimit: number
}

/** Quota use per configured tier (none without tiers); reads every layer and crew record. */
export async function quotaUseByTier(ctx: HoldContext): Promise<TierUse[]> {
  const tiers = listTiers(ctx.config)
  if (tiers.length === 0) return []
  const [captain, crew, usage] = await Promise.all([
    getCaptain(ctx),
    crewTiers(ctx.db.db),
    usageByUser(ctx.db.db),
  ])
  const use = new Map(
    tiers.map((tier) => [tier.name, { tier, users: 0, usedBytes: 0, atLimit: 0 }]),
  )
  const fallback = defaultTier(ctx.config)
  const bytesOf = new Map(usage.map((u) => [u.did, u.totalSize]))
  for (const did of new Set([...crew.keys(), ...bytesOf.keys()])) {
    if (did === captain.owner) continue
    const named = crew.get(did)
    const tier = (named ? tierByName(ctx.config, named) : null) ?? fallback
    const entry = tier && use.get(tier.name)
    if (!entry) continue
    const bytes = bytesOf.get(did) ?? 0
    entry.users += 1
    entry.usedBytes += bytes
    if (tier.limit !== null && bytes >= tier.limit) entry.atLimit += 1
  }
  return [...use.values()]
}

/** io.atcr.hold.getQuota's answer for `did`. */
export async function quotaOf(ctx: HoldContext, did: string): Promise<GetQuotaOutput> {
  const [usage, policy] = await Promise.all([usageOf(ctx.db.db, did), quotaPolicyOf(ctx, did)])
  return {
    userDid: did,
    uniqueBlobs: usage.uniqueBlobs,
    totalSize: usage.totalSize,
    ...(policy.tier ? { tier: policy.tier.name } : {}),
    ...(policy.limit === null ? {} : { limit: policy.limit }),
  }
}

/**
 * Whether `did` may add the blobs (digest → size): their current usage plus the digests
 * they do not store yet must stay within their limit. Hold the record lock from this check
 * until the layer records are written.
 */
export async function checkQuota(
  ctx: HoldContext,
  did: string,
  blobs: ReadonlyMap<string, number>,
): Promise<QuotaCheck> {
  const [usage, policy] = await Promise.all([usageOf(ctx.db.db, did), quotaPolicyOf(ctx, did)])
  let addedBytes = 0
  let addedBlobs = 0
  for (const [digest, size] of blobs) {
    if (usage.sizes.has(digest)) continue
    addedBytes += size
    addedBlobs += 1
  }
  // A push that stores nothing new (a re-push, a re-tag) never fails, even over the limit
  // (after a move to a smaller tier): it does not grow the user's storage.
  const allowed =
    policy.limit === null || addedBytes === 0 || usage.totalSize + addedBytes <= policy.limit
  return { allowed, policy, usage, addedBytes, addedBlobs }
}
