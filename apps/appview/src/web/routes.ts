// The browser side: ATProto OAuth sign-in (/auth/oauth/login, /auth/oauth/callback), sign
// out (POST /auth/logout), device approval (/device), then the browsing pages and the
// signed-in settings (browse-routes.ts, settings-routes.ts). Sessions are httpOnly,
// SameSite=Lax cookies (Secure with an https base URL); every state-changing form carries a
// CSRF token (@fastify/csrf-protection) and cross-origin posts are refused.
import { randomBytes } from 'node:crypto'
import formbody from '@fastify/formbody'
import type { FastifyError, FastifyInstance } from 'fastify'
import { CALLBACK_PATH, CLIENT_METADATA_PATH, JWKS_PATH } from '../auth/oauth.ts'
import { ensureSailorProfile } from '../auth/profile.ts'
import { SESSION_COOKIE } from '../auth/web-sessions.ts'
import type { AppViewContext } from '../context.ts'
import { registerBrowseRoutes } from './browse-routes.ts'
import { registerSettingsRoutes } from './settings-routes.ts'
import { registerViews } from './views.ts'
import { createWebKit, field } from './web-kit.ts'

/** A same-site path to return to after sign-in; anything else goes home. */
function safeReturnTo(value: unknown): string {
  return typeof value === 'string' && /^\/(?![/\\])/.test(value) ? value : '/'
}

export async function registerWebRoutes(app: FastifyInstance, ctx: AppViewContext): Promise<void> {
  const web = createWebKit(app, ctx)
  const secure = web.base.protocol === 'https:'
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'lax' as const, secure }
  // A description may hold 100,000 characters: up to four UTF-8 bytes each, each byte up to
  // three characters once form-encoded.
  await app.register(formbody, { bodyLimit: 1_300_000 })
  await registerViews(app, { secure, production: ctx.config.server.mode === 'production' })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
    if (status >= 500) request.log.error({ err: error }, 'page failed')
    const message =
      status === 403
        ? 'This form is out of date or was sent from another site. Go back, reload the page and try again.'
        : status >= 500
          ? 'The server failed; try again later.'
          : error.message
    return web.error(request, reply, status, message)
  })
  app.setNotFoundHandler((request, reply) =>
    web.error(request, reply, 404, `There is no page at ${request.url.split('?', 1)[0]}.`),
  )

  app.get(CLIENT_METADATA_PATH, async (_request, reply) => {
    if (!ctx.oauth.confidential) return reply.code(404).send({ error: 'NotFound' })
    return reply.header('cache-control', 'max-age=300').send(ctx.oauth.client.clientMetadata)
  })
  app.get(JWKS_PATH, async (_request, reply) => {
    if (!ctx.oauth.confidential) return reply.code(404).send({ error: 'NotFound' })
    return reply.header('cache-control', 'max-age=300').send(ctx.oauth.client.jwks)
  })

  const { rate_limit } = ctx.config.auth
  // Only sign-ins started count: each resolves a handle and asks its PDS.
  const signInStarts = app.createRateLimit({
    max: rate_limit.sign_in_per_address,
    timeWindow: rate_limit.window * 1000,
  })

  app.get('/auth/oauth/login', async (request, reply) => {
    const query = request.query as Record<string, unknown>
    const returnTo = safeReturnTo(query.return_to)
    const handle = typeof query.handle === 'string' ? query.handle.trim().replace(/^@/, '') : ''
    if (!handle) return web.page(request, reply, 'sign-in', 'Sign in', { returnTo, handle })
    const limit = await signInStarts(request)
    if (!limit.isAllowed && limit.isExceeded) {
      const seconds = Math.max(1, limit.ttlInSeconds)
      return web.page(
        request,
        reply.code(429).header('retry-after', seconds),
        'sign-in',
        'Sign in',
        {
          returnTo,
          handle,
          error: `Too many sign-ins from your address; try again in ${seconds} seconds.`,
        },
      )
    }
    const state = JSON.stringify({ returnTo, nonce: randomBytes(8).toString('hex') })
    let url: URL
    try {
      url = await ctx.oauth.authorizeUrl(handle, state)
    } catch (error) {
      request.log.info({ err: error, handle }, 'OAuth sign-in could not start')
      return web.page(request, reply.code(400), 'sign-in', 'Sign in', {
        returnTo,
        handle,
        error: `Could not start signing in as ${handle}.`,
      })
    }
    return reply.redirect(url.href, 303)
  })

  app.get(CALLBACK_PATH, async (request, reply) => {
    const params = new URLSearchParams(request.query as Record<string, string>)
    let did: string
    let state: string | null
    try {
      ;({ did, state } = await ctx.oauth.callback(params))
    } catch (error) {
      request.log.info({ err: error }, 'OAuth callback refused')
      return web.page(request, reply.code(400), 'sign-in', 'Sign in', {
        returnTo: '/',
        handle: '',
        error: 'Signing in did not complete. Try again.',
      })
    }
    let returnTo = '/'
    try {
      returnTo = safeReturnTo((JSON.parse(state ?? '{}') as { returnTo?: unknown }).returnTo)
    } catch {
      // A state this AppView did not write: go home.
    }
    const identity = await ctx.identity.resolveIdentity(did).catch(() => null)
    const handle = identity?.handle ?? null
    try {
      const agent = await ctx.oauth.agentFor(did)
      const outcome = await ensureSailorProfile(agent, did, ctx.config.registry.default_hold_did)
      if (outcome === 'created') request.log.info({ did }, 'created io.atcr.sailor.profile')
    } catch (error) {
      request.log.warn({ did, err: error }, 'could not make sure of the sailor profile')
    }
    const id = await ctx.webSessions.create({ did, handle })
    reply.setCookie(SESSION_COOKIE, id, {
      ...cookieOptions,
      maxAge: Math.floor(ctx.webSessions.lifetimeMs / 1000),
    })
    return reply.redirect(returnTo, 303)
  })

  app.post('/auth/logout', web.protect, async (request, reply) => {
    await ctx.webSessions.delete(request.cookies[SESSION_COOKIE])
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    return reply.redirect('/', 303)
  })

  app.get('/device', async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    const userCode = field(request.query, 'user_code')
    const pending = userCode ? await ctx.devices.pending(userCode) : null
    const message = userCode && !pending ? 'That code is unknown or has expired.' : undefined
    return web.page(request, reply, 'device', 'Device', { userCode, pending, message })
  })

  app.post('/device', web.protect, async (request, reply) => {
    const user = await web.requireUser(request, reply)
    if (!user) return reply
    const approved = field(request.body, 'decision') === 'approve'
    const userCode = field(request.body, 'user_code')
    const decided = await ctx.devices.decide(userCode, user, approved)
    if (!decided) {
      return web.page(request, reply.code(400), 'device', 'Device', {
        userCode,
        pending: null,
        message: 'That code is unknown or has expired.',
      })
    }
    request.log.info({ did: user.did, approve: approved }, 'device authorization decided')
    return web.page(request, reply, 'device-decided', 'Device', { approved })
  })

  registerBrowseRoutes(app, web)
  registerSettingsRoutes(app, web)
}
