// Garbage collection (a preview, then a run, in the background with progress on the page)
// and the backup: the hold's repo as a CAR, the same bytes as `atcr-hold repo export`.
import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { GcBusyError } from '../../gc/runner.ts'
import type { AdminRoutes } from '../index.ts'
import { renderPage } from '../render.ts'

/** The GC page reloads itself this often while a collection runs. */
const REFRESH_SECONDS = 1

export function registerMaintenanceRoutes(scope: FastifyInstance, routes: AdminRoutes): void {
  const { ctx, signedIn, protect } = routes

  scope.get('/gc', { preHandler: signedIn }, async (request, reply) => {
    const job = ctx.gc.latest
    return renderPage(reply, 'gc', {
      title: 'Garbage collection and backup',
      user: request.adminUser ?? null,
      section: 'maintenance',
      job,
      running: ctx.gc.running,
      ...(ctx.gc.running ? { refresh: REFRESH_SECONDS } : {}),
      gracePeriod: ctx.config.gc.grace_period,
      holdDid: ctx.identity.did,
    })
  })

  for (const [path, dryRun] of [
    ['/gc/preview', true],
    ['/gc/run', false],
  ] as const) {
    scope.post(path, { preHandler: [...protect, signedIn] }, async (request, reply) => {
      try {
        ctx.gc.start(dryRun)
        request.log.info({ by: request.adminUser?.did, dryRun }, 'admin started a collection')
      } catch (error) {
        if (!(error instanceof GcBusyError)) throw error
      }
      return reply.redirect('/admin/gc', 303)
    })
  }

  scope.get('/backup.car', { preHandler: signedIn }, async (request, reply) => {
    const car = ctx.repo.reader.exportCar()
    const name = `${ctx.identity.did.replaceAll(':', '-')}-${car.rev}.car`
    request.log.info({ by: request.adminUser?.did, rev: car.rev }, 'admin downloaded a backup')
    return reply
      .type('application/vnd.ipld.car')
      .header('content-disposition', `attachment; filename="${name}"`)
      .header('cache-control', 'no-store')
      .send(Readable.from(car))
  })
}
