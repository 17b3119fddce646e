// io.atcr.hold.setStats: overwrite a repository's counters with absolute values (migration
// from another hold, corrections). The owner, crew admins and the trusted AppView may.
// Counters and times that are not given keep their values (0 for a new record).
import { LexiconValidationError, NSID, validateInput } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate, PERMISSION, permissionsOf } from '../../../../access/index.ts'
import type { HoldContext } from '../../../../context.ts'
import { withRecordLock } from '../../../../record-lock.ts'
import { getStats, statsWrite } from '../../../../stats/index.ts'
import { authRequired, forbidden, invalidRequest } from '../../../error.ts'
import { output } from '../../../lexicon.ts'

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.post(`/xrpc/${NSID.holdSetStats}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdSetStats)
    if (caller.did === null) throw authRequired()
    const allowed =
      caller.trustedAppView || (await permissionsOf(ctx, caller.did)).has(PERMISSION.crewAdmin)
    if (!allowed) throw forbidden(`${caller.did} may not set counters (needs crew:admin)`)
    const input = parseSetStatsInput(request.body)
    const { ownerDid, repository } = input
    await withRecordLock(ctx, async () => {
      const current = await getStats(ctx, ownerDid, repository)
      const change = {
        ...(input.pullCount === undefined ? {} : { pullCount: input.pullCount }),
        ...(input.pushCount === undefined ? {} : { pushCount: input.pushCount }),
        ...(input.lastPull === undefined ? {} : { lastPull: input.lastPull }),
        ...(input.lastPush === undefined ? {} : { lastPush: input.lastPush }),
      }
      const now = new Date().toISOString()
      await ctx.repo.writer.applyWrites([statsWrite(ownerDid, repository, current, change, now)])
      // An absolute count replaces the counts still waiting to be written.
      if (input.pullCount !== undefined) ctx.counters.forget(ownerDid, repository, 'pull')
      if (input.pushCount !== undefined) ctx.counters.forget(ownerDid, repository, 'push')
    })
    return output(NSID.holdSetStats, { success: true })
  })
}

/** The input, with the lexicon's own error names for a bad owner or repository. */
function parseSetStatsInput(body: unknown) {
  try {
    const input = validateInput(NSID.holdSetStats, body ?? {})
    if (input.repository.trim() === '') {
      throw invalidRequest('repository must not be empty', 'InvalidRepository')
    }
    return input
  } catch (err) {
    if (!(err instanceof LexiconValidationError)) throw err
    const error = /ownerDid/.test(err.message)
      ? 'InvalidOwner'
      : /repository/.test(err.message)
        ? 'InvalidRepository'
        : 'InvalidRequest'
    throw invalidRequest(err.message, error)
  }
}
