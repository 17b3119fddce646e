// Settings: the captain record's flags and successor, and the tiers (from config).
import { isValidDid } from '@atproto/syntax'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { getCaptain } from '../../access/index.ts'
import { listTiers } from '../../quota/index.ts'
import { updateCaptain } from '../captain.ts'
import type { AdminRoutes } from '../index.ts'
import { renderPage } from '../render.ts'

export function registerSettingsRoutes(scope: FastifyInstance, routes: AdminRoutes): void {
  const { ctx, signedIn, protect } = routes
  const page = async (
    request: FastifyRequest,
    reply: FastifyReply,
    notice?: { kind: 'ok' | 'error'; text: string },
  ) =>
    renderPage(reply, 'settings', {
      title: 'Settings',
      user: request.adminUser ?? null,
      section: 'settings',
      captain: await getCaptain(ctx),
      holdDid: ctx.identity.did,
      tiers: listTiers(ctx.config),
      notice: notice ?? null,
    })

  scope.get('/settings', { preHandler: signedIn }, (request, reply) => page(request, reply))

  scope.post('/settings', { preHandler: [...protect, signedIn] }, async (request, reply) => {
    const form = (request.body ?? {}) as Record<string, unknown>
    const flag = (name: string) => form[name] === 'on' || form[name] === 'true'
    const successor = typeof form.successor === 'string' ? form.successor.trim() : ''
    if (successor !== '' && (!isValidDid(successor) || successor === ctx.identity.did)) {
      return page(request, reply.code(400), {
        kind: 'error',
        text: 'The successor must be the DID of another hold (did:web:… or did:plc:…), or empty.',
      })
    }
    const changed = await updateCaptain(ctx, {
      public: flag('public'),
      allowAllCrew: flag('allowAllCrew'),
      enableBlueskyPosts: flag('enableBlueskyPosts'),
      successor: successor === '' ? null : successor,
    })
    request.log.info({ by: request.adminUser?.did, changed }, 'admin saved the hold settings')
    return page(request, reply, {
      kind: 'ok',
      text: changed ? 'Settings saved in the captain record.' : 'Nothing changed.',
    })
  })
}
