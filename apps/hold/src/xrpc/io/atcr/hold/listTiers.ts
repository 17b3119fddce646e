// io.atcr.hold.listTiers: the quota tiers of this hold, in rank order (rank = the
// tierRank of updateCrewTier). Public.
import { NSID } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import type { HoldContext } from '../../../../context.ts'
import { listTiers, toTierInfo } from '../../../../quota/index.ts'
import { output } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.get(`/xrpc/${NSID.holdListTiers}`, async () =>
    output(NSID.holdListTiers, { tiers: listTiers(ctx.config).map(toTierInfo) }),
  )
}
