// io.atcr.hold.deleteUserData: erase the caller's records from this hold (right to
// erasure) in one commit: their crew record (the captain keeps theirs, or the hold would
// have no owner in its crew), their layer records and the counters of their repositories.
// Blob bytes stay: other users may share them, and garbage collection takes those that
// no layer record names any more once the grace period has passed.
import { type DeleteUserDataOutput, NSID } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate, getCaptain, getCrewMember } from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { layersOfUser } from '../../../../layers/index.ts'
import type { RecordWrite } from '../../../../pds/index.ts'
import { withRecordLock } from '../../../../record-lock.ts'
import { statsOfOwner } from '../../../../stats/index.ts'
import { authRequired, XrpcError } from '../../../error.ts'
import { output, parseInput } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.post(`/xrpc/${NSID.holdDeleteUserData}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdDeleteUserData)
    if (caller.did === null) throw authRequired('Sign in to delete your data')
    parseInput(NSID.holdDeleteUserData, request.body)
    return output(NSID.holdDeleteUserData, await deleteUserData(ctx, caller.did))
  })
}

export async function deleteUserData(
  ctx: HoldContext,
  userDid: string,
): Promise<DeleteUserDataOutput> {
  // Pending counts are written first, then any counted meanwhile dropped, so that no batch
  // brings a counter back after the erasure.
  await ctx.counters.flush()
  return withRecordLock(ctx, async () => {
    ctx.counters.forgetOwner(userDid)
    const holdDid = ctx.identity.did
    const [captain, crew, layers, stats] = await Promise.all([
      getCaptain(ctx),
      getCrewMember(ctx, userDid),
      layersOfUser(ctx.db.db, holdDid, userDid),
      statsOfOwner(ctx.db.db, holdDid, userDid),
    ])
    const deleteCrew = crew !== null && captain.owner !== userDid
    const writes: RecordWrite[] = [
      ...(deleteCrew ? [{ collection: NSID.holdCrew, rkey: crew.rkey }] : []),
      ...layers.map((layer) => ({ collection: NSID.holdLayer, rkey: layer.rkey })),
      ...stats.map((entry) => ({ collection: NSID.holdStats, rkey: entry.rkey })),
    ].map((path) => ({ action: 'delete' as const, ...path }))
    if (writes.length > 0) {
      try {
        await ctx.repo.writer.applyWrites(writes)
      } catch (err) {
        ctx.logger.error({ err, userDid }, 'deleting user data failed')
        throw new XrpcError(500, 'DeletionFailed', 'The records could not be deleted; nothing was')
      }
    }
    return {
      success: true,
      crewDeleted: deleteCrew,
      layersDeleted: layers.length,
      statsDeleted: stats.length,
    }
  })
}
