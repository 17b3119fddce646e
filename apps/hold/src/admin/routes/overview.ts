import type { FastifyInstance } from 'fastify'
import type { AdminRoutes } from '../index.ts'
import { loadOverview, TOP_CHOICES } from '../overview.ts'
import { renderPage } from '../render.ts'

export function registerOverviewRoutes(scope: FastifyInstance, routes: AdminRoutes): void {
  const { ctx, signedIn } = routes
  scope.get('/', { preHandler: signedIn }, async (request, reply) => {
    const asked = Number((request.query as { top?: string }).top)
    const top = TOP_CHOICES.find((n) => n === asked) ?? TOP_CHOICES[0]
    const overview = await loadOverview(ctx, top)
    return renderPage(reply, 'overview', {
      title: 'Overview',
      user: request.adminUser ?? null,
      section: 'overview',
      holdDid: ctx.identity.did,
      topChoices: TOP_CHOICES,
      ...overview,
    })
  })
}
