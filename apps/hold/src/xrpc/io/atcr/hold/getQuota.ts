// io.atcr.hold.getQuota: an account's storage on this hold (distinct digests of its layer
// records, each counted once), with its tier and limit (no limit: unlimited).
//
// Who may ask: the account itself, the hold's crew admins (the owner included) and the
// trusted AppView. The figures could be derived from the public layer and crew records,
// but summing them is work the hold does only for those who need the answer.
import { NSID } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate, PERMISSION, permissionsOf } from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { quotaOf } from '../../../../quota/index.ts'
import { authRequired, forbidden } from '../../../error.ts'
import { output, parseParams } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.get(`/xrpc/${NSID.holdGetQuota}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdGetQuota)
    if (caller.did === null) throw authRequired()
    const { userDid } = parseParams(NSID.holdGetQuota, request.query, 'InvalidUserDid')
    const allowed =
      caller.did === userDid ||
      caller.trustedAppView ||
      (await permissionsOf(ctx, caller.did)).has(PERMISSION.crewAdmin)
    if (!allowed) throw forbidden(`${caller.did} may not see the quota of ${userDid}`)
    return output(NSID.holdGetQuota, await quotaOf(ctx, userDid))
  })
}
