// Garbage collection for the hold owner over HTTP: POST /admin/api/gc with
// `{"dryRun": true|false}` and a service token of the owner for the method GC_LXM. There
// is no lexicon for it (the original runs GC from its admin pages), hence an admin route
// rather than an io.atcr.hold method. One collection runs at a time per hold (ctx.gc,
// shared with the admin pages).
import type { FastifyInstance } from 'fastify'
import { authenticate, requireOwner } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { invalidRequest, XrpcError, xrpcErrorHandler } from '../xrpc/error.ts'
import { GcBusyError } from './runner.ts'

export const GC_ROUTE = '/admin/api/gc'
/** The `lxm` the owner's service token must name (getServiceAuth `lxm`). */
export const GC_LXM = 'io.atcr.hold.admin.runGc'

export async function registerGcRoute(app: FastifyInstance, ctx: HoldContext): Promise<void> {
  await app.register(async (scope) => {
    scope.setErrorHandler(xrpcErrorHandler)
    scope.post(GC_ROUTE, async (request) => {
      await requireOwner(ctx, await authenticate(ctx, request, GC_LXM))
      const dryRun = (request.body as { dryRun?: unknown } | undefined)?.dryRun
      if (typeof dryRun !== 'boolean') {
        throw invalidRequest('dryRun (true or false) is required')
      }
      try {
        return await ctx.gc.run(dryRun)
      } catch (error) {
        if (error instanceof GcBusyError) {
          throw new XrpcError(409, 'GcInProgress', 'A garbage collection is running')
        }
        throw error
      }
    })
  })
}
