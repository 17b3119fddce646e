// The browser side: ATProto OAuth sign-in (/auth/oauth/login, /auth/oauth/callback), sign
// out (POST /auth/logout), device approval (/device) and settings (/settings). Sessions are
// httpOnly, SameSite=Lax cookies (Secure with an https base URL); every state-changing form
// carries a CSRF token (@fastify/csrf-protection) and cross-origin posts are refused.
import { randomBytes } from 'node:crypto'
import formbody from '@fastify/formbody'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CALLBACK_PATH, CLIENT_METADATA_PATH, JWKS_PATH } from '../auth/oauth.ts'
import { ensureSailorProfile } from '../auth/profile.ts'
import { SESSION_COOKIE, type WebUser } from '../auth/web-sessions.ts'
import type { AppViewContext } from '../context.ts'
import {
  deviceDecidedPage,
  devicePage,
  errorPage,
  homePage,
  settingsPage,
  signInPage,
} from './pages.ts'

declare module 'fastify' {
  interface FastifyRequest {
    webUser?: WebUser | null
  }
}

/** A same-site path to return to after sign-in; anything else goes home. */
function safeReturnTo(value: unknown): string {
  return typeof value === 'string' && /^\/(?![/\\])/.test(value) ? value : '/'
}

function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name]
  return typeof value === 'string' ? value : ''
}

export async function registerWebRoutes(app: FastifyInstance, ctx: AppViewContext): Promise<void> {
  const base = new URL(ctx.config.server.base_url)
  const secure = base.protocol === 'https:'
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'lax' as const, secure }
  await app.register(formbody, { bodyLimit: 16 * 1024 })

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
    if (status >= 500) request.log.error({ err: error }, 'page failed')
    const message =
      status === 403
        ? 'This form is out of date or was sent from another site. Go back, reload the page and try again.'
        : status >= 500
          ? 'The server failed; try again later.'
          : error.message
    return reply.code(status).type('text/html; charset=utf-8').send(errorPage(status, message))
  })

  const currentUser = async (request: FastifyRequest): Promise<WebUser | null> => {
    if (request.webUser === undefined) {
      request.webUser = await ctx.webSessions.find(request.cookies[SESSION_COOKIE])
    }
    return request.webUser
  }
  const page = (reply: FastifyReply, body: string) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-frame-options', 'DENY')
      .header(
        'content-security-policy',
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' *; frame-ancestors 'none'",
      )
      .send(body)
  /** Refuses state changes from other origins (the CSRF token is checked as well). */
  const sameOrigin = async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin
    if (origin !== undefined && origin !== base.origin) {
      return reply
        .code(403)
        .type('text/html; charset=utf-8')
        .send(errorPage(403, 'Cross-site request refused.'))
    }
  }
  const protect = { preHandler: [sameOrigin, app.csrfProtection] }
  /** Signed-in user, or a redirect to sign in that comes back here. */
  const requireUser = async (request: FastifyRequest, reply: FastifyReply) => {
    const user = await currentUser(request)
    if (!user) {
      const back = encodeURIComponent(request.url)
      await reply.redirect(`/auth/oauth/login?return_to=${back}`, 303)
      return null
    }
    return user
  }

  app.get('/', async (request, reply) => {
    const user = await currentUser(request)
    return page(reply, homePage(user, user ? reply.generateCsrf() : undefined))
  })

  app.get(CLIENT_METADATA_PATH, async (_request, reply) => {
    if (!ctx.oauth.confidential) return reply.code(404).send({ error: 'NotFound' })
    return reply.header('cache-control', 'max-age=300').send(ctx.oauth.client.clientMetadata)
  })
  app.get(JWKS_PATH, async (_request, reply) => {
    if (!ctx.oauth.confidential) return reply.code(404).send({ error: 'NotFound' })
    return reply.header('cache-control', 'max-age=300').send(ctx.oauth.client.jwks)
  })

  app.get('/auth/oauth/login', async (request, reply) => {
    const query = request.query as Record<string, unknown>
    const returnTo = safeReturnTo(query.return_to)
    const handle = typeof query.handle === 'string' ? query.handle.trim().replace(/^@/, '') : ''
    if (!handle) return page(reply, signInPage(returnTo))
    const state = JSON.stringify({ returnTo, nonce: randomBytes(8).toString('hex') })
    let url: URL
    try {
      url = await ctx.oauth.authorizeUrl(handle, state)
    } catch (error) {
      request.log.info({ err: error, handle }, 'OAuth sign-in could not start')
      return page(
        reply.code(400),
        signInPage(returnTo, `Could not start signing in as ${handle}.`, handle),
      )
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
      return page(reply.code(400), signInPage('/', 'Signing in did not complete. Try again.'))
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

  app.post('/auth/logout', protect, async (request, reply) => {
    await ctx.webSessions.delete(request.cookies[SESSION_COOKIE])
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    return reply.redirect('/', 303)
  })

  app.get('/device', async (request, reply) => {
    const user = await requireUser(request, reply)
    if (!user) return reply
    const code = field(request.query, 'user_code')
    const pending = code ? await ctx.devices.pending(code) : null
    const message = code && !pending ? 'That code is unknown or has expired.' : undefined
    return page(reply, devicePage(user, reply.generateCsrf(), code, pending, message))
  })

  app.post('/device', protect, async (request, reply) => {
    const user = await requireUser(request, reply)
    if (!user) return reply
    const approve = field(request.body, 'decision') === 'approve'
    const code = field(request.body, 'user_code')
    const decided = await ctx.devices.decide(code, user, approve)
    const token = reply.generateCsrf()
    if (!decided) {
      return page(
        reply.code(400),
        devicePage(user, token, code, null, 'That code is unknown or has expired.'),
      )
    }
    request.log.info({ did: user.did, approve }, 'device authorization decided')
    return page(reply, deviceDecidedPage(user, token, approve))
  })

  app.get('/settings', async (request, reply) => {
    const user = await requireUser(request, reply)
    if (!user) return reply
    const devices = await ctx.devices.list(user.did)
    return page(reply, settingsPage(user, reply.generateCsrf(), devices))
  })

  app.post<{ Params: { id: string } }>(
    '/settings/devices/:id/revoke',
    protect,
    async (request, reply) => {
      const user = await requireUser(request, reply)
      if (!user) return reply
      const revoked = await ctx.devices.revoke(user.did, request.params.id)
      const devices = await ctx.devices.list(user.did)
      const message = revoked ? 'Device revoked: its secret no longer works.' : 'No such device.'
      return page(
        reply.code(revoked ? 200 : 404),
        settingsPage(user, reply.generateCsrf(), devices, message),
      )
    },
  )
}
