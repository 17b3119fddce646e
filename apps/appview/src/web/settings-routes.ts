// Signed-in pages and forms: settings (default hold, autoRemoveUntagged, devices, sign
// out), stars, and the owner's repository description. Every form is a POST with a CSRF
// token that answers with a redirect (so reloading does not post again) or an error page.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { WebUser } from '../auth/web-sessions.ts'
import { ownerName, parseRepoPath, repoPath, resolveOwner } from './browse-routes.ts'
import type { HoldRow } from './browse-store.ts'
import { OCI_CLIENTS } from './format.ts'
import { RecordWriteError, UserRecords } from './user-records.ts'
import { field, type WebKit } from './web-kit.ts'

const MESSAGES: Record<string, string> = {
  saved: 'Settings saved in your io.atcr.sailor.profile.',
  revoked: 'Device revoked: its secret no longer works.',
  'no-device': 'No such device.',
}

/** io.atcr.repo.page's description: at most 100,000 bytes of UTF-8 (its lexicon). */
const MAX_DESCRIPTION_BYTES = 100_000

export function registerSettingsRoutes(app: FastifyInstance, web: WebKit): void {
  const { ctx } = web
  const records = new UserRecords(ctx)

  /** Runs a change; a refusal by the user's PDS becomes an error page saying why. */
  const change = async (
    request: FastifyRequest,
    reply: FastifyReply,
    write: () => Promise<void>,
    then: string,
  ): Promise<FastifyReply> => {
    try {
      await write()
    } catch (error) {
      if (error instanceof RecordWriteError) {
        request.log.info({ err: error }, 'a record write from the pages failed')
        return web.error(request, reply, error.status, error.message)
      }
      throw error
    }
    return reply.redirect(then, 303)
  }

  /** Holds to offer: the user's own, those they are crew on, open ones; and the current one. */
  const holdChoices = async (user: WebUser, current: string | null): Promise<HoldRow[]> => {
    const holds = await ctx.web.browse.holdsFor(user.did, { includeOpen: true })
    if (current && !holds.some((h) => h.holdDid === current)) {
      holds.unshift({
        holdDid: current,
        ownerDid: '',
        public: false,
        allowAllCrew: false,
        region: null,
        relation: 'current',
        health: await ctx.web.browse.holdHealth(current),
      })
    }
    return holds
  }

  app.get('/settings', async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    let profile = null
    let profileError: string | null = null
    try {
      profile = await records.profile(user.did)
    } catch (error) {
      if (!(error instanceof RecordWriteError)) throw error
      profileError = error.message
    }
    const [devices, holds] = await Promise.all([
      ctx.devices.list(user.did),
      holdChoices(user, profile?.defaultHold ?? null),
    ])
    return web.page(request, reply, 'settings', 'Settings', {
      devices,
      profile,
      profileError,
      holds,
      registryDefault: ctx.config.registry.default_hold_did,
      clients: OCI_CLIENTS,
      message: MESSAGES[field(request.query, 'done')],
    })
  })

  app.post('/settings/profile', web.protect, async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    const defaultHold = field(request.body, 'default_hold') || null
    const autoRemoveUntagged = field(request.body, 'auto_remove_untagged') === 'on'
    const client = field(request.body, 'oci_client') || 'docker'
    if (!(OCI_CLIENTS as readonly string[]).includes(client)) {
      return web.error(
        request,
        reply,
        400,
        `${client || 'No client'} is not a client offered here.`,
      )
    }
    const ociClient = client === 'docker' ? null : client
    if (defaultHold) {
      const allowed = await holdChoices(user, (await records.profile(user.did)).defaultHold)
      if (!allowed.some((h) => h.holdDid === defaultHold)) {
        return web.error(request, reply, 400, `${defaultHold} is not a hold you may push to.`)
      }
    }
    return change(
      request,
      reply,
      () => records.setProfile(user.did, { defaultHold, autoRemoveUntagged, ociClient }),
      '/settings?done=saved',
    )
  })

  app.post<{ Params: { id: string } }>(
    '/settings/devices/:id/revoke',
    web.protect,
    async (request, reply) => {
      const user = await web.requireUser(request, reply)
      if (!user) return reply
      const revoked = await ctx.devices.revoke(user.did, request.params.id)
      return reply.redirect(`/settings?done=${revoked ? 'revoked' : 'no-device'}`, 303)
    },
  )

  // POST /r/<identity>/<repo>/-/star | unstar | description
  app.post('/r/*', web.protect, async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    const parsed = parseRepoPath((request.params as { '*': string })['*'])
    const owner = parsed ? await resolveOwner(web, parsed.identity) : null
    if (!parsed || !owner) return web.error(request, reply, 404, 'No such repository.')
    const { repository, ref: action } = parsed
    const back = repoPath(owner, repository)
    if (action === 'star' || action === 'unstar') {
      const images = await ctx.web.browse.manifests(owner.did, repository)
      const tags = await ctx.web.browse.tags(owner.did, repository)
      if (images.length === 0 && tags.length === 0) {
        return web.error(request, reply, 404, `${ownerName(owner)}/${repository} holds no images.`)
      }
      const write =
        action === 'star'
          ? () => records.star(user.did, owner.did, repository)
          : () => records.unstar(user.did, owner.did, repository)
      return change(request, reply, write, back)
    }
    if (action === 'description') {
      if (user.did !== owner.did) {
        return web.error(request, reply, 403, 'Only the owner may edit the description.')
      }
      const description = field(request.body, 'description').replaceAll('\r\n', '\n')
      if (Buffer.byteLength(description) > MAX_DESCRIPTION_BYTES) {
        return web.error(request, reply, 400, 'The description is longer than 100,000 bytes.')
      }
      return change(
        request,
        reply,
        () => records.setDescription(user.did, repository, description),
        back,
      )
    }
    return web.error(request, reply, 404, 'No such action.')
  })
}
