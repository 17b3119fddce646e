// io.atcr.hold.exportUserData: everything this hold's repo says about the caller (data
// portability): their crew record, their layer records, the counters of their
// repositories, and whether they own the hold. The hold makes no Bluesky posts yet.
import {
  type ExportUserDataOutput,
  type LayerExport,
  NSID,
  type StatsExport,
} from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate, getCaptain, getCrewMember } from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { layersOfUser } from '../../../../layers/index.ts'
import { statsOfOwner } from '../../../../stats/index.ts'
import { authRequired } from '../../../error.ts'
import { output } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.get(`/xrpc/${NSID.holdExportUserData}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdExportUserData)
    if (caller.did === null) throw authRequired('Sign in to export your data')
    return output(NSID.holdExportUserData, await exportUserData(ctx, caller.did))
  })
}

export async function exportUserData(
  ctx: HoldContext,
  userDid: string,
): Promise<ExportUserDataOutput> {
  // The export shows every pull counted so far, including those not written yet.
  await ctx.counters.flush()
  const holdDid = ctx.identity.did
  const [captain, crew, layers, stats] = await Promise.all([
    getCaptain(ctx),
    getCrewMember(ctx, userDid),
    layersOfUser(ctx.db.db, holdDid, userDid),
    statsOfOwner(ctx.db.db, holdDid, userDid),
  ])
  const layerRecords = layers.map(
    ({ value }): LayerExport => ({
      digest: value.digest,
      size: value.size,
      mediaType: value.mediaType,
      manifest: value.manifest,
      createdAt: value.createdAt,
    }),
  )
  const statsRecords = stats.map(
    ({ value }): StatsExport => ({
      repository: value.repository,
      pullCount: value.pullCount,
      pushCount: value.pushCount,
      updatedAt: value.updatedAt,
      ...(value.lastPull ? { lastPull: value.lastPull } : {}),
      ...(value.lastPush ? { lastPush: value.lastPush } : {}),
    }),
  )
  const crewRecord = crew
    ? {
        addedAt: crew.value.addedAt,
        permissions: crew.value.permissions,
        role: crew.value.role,
        ...(crew.value.tier ? { tier: crew.value.tier } : {}),
      }
    : undefined
  return {
    exportedAt: new Date().toISOString(),
    holdDid,
    userDid,
    isCaptain: captain.owner === userDid,
    layerRecords,
    statsRecords,
    blueskyPosts: [],
    ...(crewRecord ? { crewRecord } : {}),
  }
}
