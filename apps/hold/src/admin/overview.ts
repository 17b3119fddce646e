// What the overview page shows, gathered from the database, the storage and the identities
// of the top users.
import { statfs } from 'node:fs/promises'
import type { StatsRecord } from '@atcr/core/lexicons'
import { type HoldContext, storageConfig } from '../context.ts'
import {
  busiestRepositories,
  crewCount,
  openUploads,
  referencedStorage,
  type UserUsage,
  usageByUser,
} from './usage-store.ts'

export const TOP_CHOICES = [10, 50, 100] as const
const REPOSITORIES_SHOWN = 100

export interface Overview {
  storage: {
    driver: string
    blobs: number
    bytes: number
    /** Free bytes where the blobs are (filesystem driver); null where the driver cannot say. */
    freeBytes: number | null
  }
  crewCount: number
  uploads: { open: number; bytes: number }
  topUsers: (UserUsage & { handle: string | null })[]
  top: number
  repositories: (StatsRecord & { ownerHandle: string | null })[]
}

export async function loadOverview(ctx: HoldContext, top: number): Promise<Overview> {
  const db = ctx.db.db
  const [referenced, crew, uploads, users, repositories, freeBytes] = await Promise.all([
    referencedStorage(db),
    crewCount(db),
    openUploads(db),
    usageByUser(db),
    busiestRepositories(db, REPOSITORIES_SHOWN),
    freeSpace(ctx),
  ])
  const topUsers = users.slice(0, top)
  const handles = await handlesOf(ctx, [
    ...topUsers.map((u) => u.did),
    ...repositories.map((r) => r.ownerDid),
  ])
  return {
    storage: {
      driver: ctx.config.storage.driver,
      blobs: referenced.blobs,
      bytes: referenced.bytes,
      freeBytes,
    },
    crewCount: crew,
    uploads: { open: uploads.count, bytes: uploads.bytes },
    topUsers: topUsers.map((u) => ({ ...u, handle: handles.get(u.did) ?? null })),
    top,
    repositories: repositories.map((r) => ({ ...r, ownerHandle: handles.get(r.ownerDid) ?? null })),
  }
}

async function freeSpace(ctx: HoldContext): Promise<number | null> {
  const storage = storageConfig(ctx.config)
  if (storage.driver !== 'filesystem') return null
  try {
    const stats = await statfs(storage.root)
    return stats.bavail * stats.bsize
  } catch {
    return null
  }
}

/** Verified handles of DIDs (cached by the resolver); a DID that does not resolve has none. */
export async function handlesOf(ctx: HoldContext, dids: string[]): Promise<Map<string, string>> {
  const unique = [...new Set(dids)]
  const resolved = await Promise.all(
    unique.map((did) =>
      ctx.resolver
        .resolveIdentity(did)
        .then((identity) => [did, identity.handle] as const)
        .catch(() => [did, undefined] as const),
    ),
  )
  const handles = new Map<string, string>()
  for (const [did, handle] of resolved) if (handle) handles.set(did, handle)
  return handles
}
