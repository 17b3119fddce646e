// io.atcr.hold.updateCrewTier: the trusted AppView (calling as itself, nobody else) moves a
// crew member to the tier at `tierRank` of the hold's list.
import { NSID } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate } from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { CrewError, updateCrew } from '../../../../crew/index.ts'
import { tierByRank } from '../../../../quota/index.ts'
import { authRequired, forbidden, invalidRequest, XrpcError } from '../../../error.ts'
import { output, parseInput } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.post(`/xrpc/${NSID.holdUpdateCrewTier}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdUpdateCrewTier)
    if (caller.did === null) throw authRequired('A token of the trusted AppView is required')
    if (!caller.trustedAppView) {
      throw forbidden(
        `Only the hold's trusted AppView may change tiers, not ${caller.did}`,
        'AuthRequired',
      )
    }
    const input = parseInput(NSID.holdUpdateCrewTier, request.body)
    const tier = tierByRank(ctx.config, input.tierRank)
    if (!tier) throw invalidRequest(`This hold has no tier of rank ${input.tierRank}`)
    try {
      await updateCrew(ctx, input.userDid, { tier: tier.name })
    } catch (err) {
      if (err instanceof CrewError && err.code === 'MemberNotFound') {
        throw new XrpcError(404, 'UserNotFound', err.message)
      }
      throw err
    }
    return output(NSID.holdUpdateCrewTier, { tierName: tier.name })
  })
}
