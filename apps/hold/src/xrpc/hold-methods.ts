// The io.atcr.hold methods about manifests, crew, quotas and counters (the upload methods
// are registered by uploads/), in their own scope with the XRPC error handler.
import type { FastifyInstance } from 'fastify'
import type { HoldContext } from '../context.ts'
import { checkTierConfig } from '../quota/index.ts'
import { xrpcErrorHandler } from './error.ts'
import { register as deleteUserData } from './io/atcr/hold/deleteUserData.ts'
import { register as exportUserData } from './io/atcr/hold/exportUserData.ts'
import { register as getLayersForManifest } from './io/atcr/hold/getLayersForManifest.ts'
import { register as getQuota } from './io/atcr/hold/getQuota.ts'
import { register as listTiers } from './io/atcr/hold/listTiers.ts'
import { register as notifyManifest } from './io/atcr/hold/notifyManifest.ts'
import { register as requestCrew } from './io/atcr/hold/requestCrew.ts'
import { register as setStats } from './io/atcr/hold/setStats.ts'
import { register as updateCrewTier } from './io/atcr/hold/updateCrewTier.ts'

const methods = [
  notifyManifest,
  requestCrew,
  getQuota,
  getLayersForManifest,
  exportUserData,
  deleteUserData,
  setStats,
  listTiers,
  updateCrewTier,
]

export async function registerHoldMethods(app: FastifyInstance, ctx: HoldContext): Promise<void> {
  // Tier settings that cannot work stop the hold at start, not at the first push.
  checkTierConfig(ctx.config)
  await app.register(async (scope) => {
    scope.setErrorHandler(xrpcErrorHandler)
    for (const register of methods) register(scope, ctx)
  })
}
