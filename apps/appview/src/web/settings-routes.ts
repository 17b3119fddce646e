// Signed-in pages: settings (devices, sign out).
import type { FastifyInstance } from 'fastify'
import type { WebKit } from './web-kit.ts'

export function registerSettingsRoutes(app: FastifyInstance, web: WebKit): void {
  const { ctx } = web

  app.get('/settings', async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    const devices = await ctx.devices.list(user.did)
    return web.page(request, reply, 'settings', 'Settings', { devices })
  })

  app.post<{ Params: { id: string } }>(
    '/settings/devices/:id/revoke',
    web.protect,
    async (request, reply) => {
      const user = await web.requireUser(request, reply)
      if (!user) return reply
      const revoked = await ctx.devices.revoke(user.did, request.params.id)
      const devices = await ctx.devices.list(user.did)
      const message = revoked ? 'Device revoked: its secret no longer works.' : 'No such device.'
      return web.page(request, reply.code(revoked ? 200 : 404), 'settings', 'Settings', {
        devices,
        message,
      })
    },
  )
}
