// Admin sign-in: the login form (POST, CSRF) sends the browser to the owner's PDS, the
// callback checks who came back (owner or crew:admin, else a refusal page and no session),
// and sign-out is a POST form; a GET to the sign-out path changes nothing.
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { mayAdminister, refuse, SESSION_COOKIE, sessionCookieOptions } from '../access.ts'
import type { AdminRoutes } from '../index.ts'
import { renderPage } from '../render.ts'
import {
  ADMIN_PREFIX,
  CALLBACK_PATH,
  CLIENT_METADATA_PATH,
  JWKS_PATH,
  LOGIN_PATH,
  LOGOUT_PATH,
} from '../services.ts'

const under = (path: string) => path.slice(ADMIN_PREFIX.length)

function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name]
  return typeof value === 'string' ? value : ''
}

export function registerAuthRoutes(scope: FastifyInstance, routes: AdminRoutes): void {
  const { ctx, admin, protect } = routes
  const cookieOptions = sessionCookieOptions(admin)
  // The sign-in form's post is redirected to the user's PDS, wherever it is, and browsers
  // apply form-action to that redirect: this page alone allows any https (or dev http) target.
  const loginCsp = `default-src 'none'; style-src 'self'; form-action 'self' https:${
    ctx.config.server.mode === 'dev' ? ' http:' : ''
  }; frame-ancestors 'none'; base-uri 'none'`
  const login = (reply: FastifyReply, message?: string, handle = '') =>
    renderPage(
      reply.header('content-security-policy', loginCsp),
      'login',
      signInPage(message, handle),
    )
  const signInPage = (message?: string, handle = '') => ({
    title: 'Sign in',
    user: null,
    available: admin.oauth !== null,
    baseUrl: admin.baseUrl,
    holdDid: ctx.identity.did,
    message: message ?? null,
    handle,
  })

  scope.get(under(CLIENT_METADATA_PATH), async (_request, reply) => {
    if (admin.oauth?.clientMetadata.token_endpoint_auth_method !== 'private_key_jwt') {
      return reply.callNotFound()
    }
    return reply.header('cache-control', 'max-age=300').send(admin.oauth.clientMetadata)
  })
  scope.get(under(JWKS_PATH), async (_request, reply) => {
    if (admin.oauth?.clientMetadata.token_endpoint_auth_method !== 'private_key_jwt') {
      return reply.callNotFound()
    }
    return reply.header('cache-control', 'max-age=300').send(admin.oauth.jwks)
  })

  scope.get(under(LOGIN_PATH), async (_request, reply) => login(reply))

  // Only sign-ins started count: each resolves a handle and asks its PDS.
  const signInStarts = scope.createRateLimit({
    max: ctx.config.admin.sign_ins_per_minute,
    timeWindow: 60_000,
  })

  scope.post(under(LOGIN_PATH), { preHandler: protect }, async (request, reply) => {
    const handle = field(request.body, 'handle').trim().replace(/^@/, '')
    if (!admin.oauth) return login(reply.code(503))
    if (!handle) return login(reply.code(400), 'Enter your handle or DID.')
    const limit = await signInStarts(request)
    if (!limit.isAllowed && limit.isExceeded) {
      const seconds = Math.max(1, limit.ttlInSeconds)
      return login(
        reply.code(429).header('retry-after', seconds),
        `Too many sign-ins from your address; try again in ${seconds} seconds.`,
        handle,
      )
    }
    let url: URL
    try {
      url = await admin.oauth.authorize(handle, {
        scope: 'atproto',
        state: randomBytes(8).toString('hex'),
      })
    } catch (error) {
      request.log.info({ err: error, handle }, 'admin sign-in could not start')
      return login(reply.code(400), `Could not start signing in as ${handle}.`, handle)
    }
    return reply.redirect(url.href, 303)
  })

  scope.get(under(CALLBACK_PATH), async (request, reply) => {
    if (!admin.oauth) return reply.redirect(LOGIN_PATH, 303)
    const params = new URLSearchParams(request.query as Record<string, string>)
    let did: string
    try {
      ;({
        session: { did },
      } = await admin.oauth.callback(params))
    } catch (error) {
      request.log.info({ err: error }, 'admin OAuth callback refused')
      return login(reply.code(400), 'Signing in did not complete. Try again.')
    }
    // Only who signed in matters here: the PDS tokens are not kept.
    await admin.oauth.revoke(did).catch((error: unknown) => {
      request.log.info({ err: error, did }, 'admin OAuth session not revoked at the PDS')
    })
    const identity = await ctx.resolver.resolveIdentity(did).catch(() => null)
    const user = { did, handle: identity?.handle ?? null }
    if (!(await mayAdminister(ctx, did))) {
      request.log.warn({ did }, 'admin sign-in refused: not the owner or a crew admin')
      return refuse(ctx, reply, user)
    }
    const id = await admin.sessions.create(user)
    request.log.info({ did }, 'admin signed in')
    reply.setCookie(SESSION_COOKIE, id, {
      ...cookieOptions,
      maxAge: Math.floor(admin.sessions.lifetimeMs / 1000),
    })
    return reply.redirect(ADMIN_PREFIX, 303)
  })

  scope.get(under(LOGOUT_PATH), async (request, reply) => {
    const user = await admin.sessions.find(request.cookies[SESSION_COOKIE])
    return renderPage(reply.code(405).header('allow', 'POST'), 'logout', {
      title: 'Sign out',
      user,
    })
  })

  scope.post(under(LOGOUT_PATH), { preHandler: protect }, async (request, reply) => {
    await admin.sessions.delete(request.cookies[SESSION_COOKIE])
    reply.clearCookie(SESSION_COOKIE, cookieOptions)
    return reply.redirect(LOGIN_PATH, 303)
  })
}
