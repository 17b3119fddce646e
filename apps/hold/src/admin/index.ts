// The hold owner's admin pages under /admin: sign-in with ATProto OAuth, then overview,
// crew, settings, garbage collection and backup. Server-rendered (Eta), no JavaScript;
// security headers from helmet (CSP without inline scripts or styles), a CSRF token on
// every form that changes anything, and errors as HTML pages.
import { fileURLToPath } from 'node:url'
import cookie from '@fastify/cookie'
import csrf from '@fastify/csrf-protection'
import formbody from '@fastify/formbody'
import helmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import view from '@fastify/view'
import { Eta } from 'eta'
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  preHandlerHookHandler,
} from 'fastify'
import type { HoldContext } from '../context.ts'
import { requireAdmin } from './access.ts'
import { renderPage } from './render.ts'
import { registerAuthRoutes } from './routes/auth.ts'
import { registerCrewRoutes } from './routes/crew.ts'
import { registerMaintenanceRoutes } from './routes/maintenance.ts'
import { registerOverviewRoutes } from './routes/overview.ts'
import { registerSettingsRoutes } from './routes/settings.ts'
import { ADMIN_PREFIX, type AdminServices } from './services.ts'
import { STYLESHEET } from './style.ts'

const VIEWS = fileURLToPath(new URL('./views', import.meta.url))

/** Form posts are small: a few fields. */
const FORM_BODY_LIMIT = 16 * 1024

export async function registerAdmin(app: FastifyInstance, ctx: HoldContext): Promise<void> {
  const admin = ctx.admin
  if (!admin) return
  await app.register(async (scope) => adminScope(scope, ctx, admin), { prefix: ADMIN_PREFIX })
}

async function adminScope(scope: FastifyInstance, ctx: HoldContext, admin: AdminServices) {
  const secure = new URL(admin.baseUrl).protocol === 'https:'
  await scope.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        'default-src': ["'none'"],
        'style-src': ["'self'"],
        'img-src': ["'self'"],
        'form-action': ["'self'"],
        'frame-ancestors': ["'none'"],
        'base-uri': ["'none'"],
      },
    },
    // Same-origin pages only; the OAuth redirect to the PDS is a top-level navigation.
    crossOriginResourcePolicy: { policy: 'same-origin' },
    // Not helmet's no-referrer: with it, browsers send `Origin: null` on our own form posts.
    referrerPolicy: { policy: 'same-origin' },
    strictTransportSecurity: secure,
  })
  await scope.register(cookie)
  // Limits are taken per route (see routes/auth.ts), none applies globally.
  await scope.register(rateLimit, { global: false })
  await scope.register(csrf, {
    cookieKey: 'atcr_hold_admin_csrf',
    cookieOpts: { path: ADMIN_PREFIX, httpOnly: true, sameSite: 'lax', secure },
  })
  await scope.register(formbody, { bodyLimit: FORM_BODY_LIMIT })
  await scope.register(view, {
    engine: { eta: new Eta({ views: VIEWS, autoEscape: true }) },
    root: VIEWS,
    production: true,
  })

  scope.setErrorHandler(async (error: FastifyError, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500
    if (status >= 500) request.log.error({ err: error }, 'admin page failed')
    const message =
      status === 403
        ? 'This form is out of date or was sent from another site. Go back, reload the page and try again.'
        : status >= 500
          ? 'The hold failed to do this; see its log, and try again.'
          : error.message
    return renderPage(reply.code(status), 'error', { title: 'Error', user: null, status, message })
  })
  scope.setNotFoundHandler(async (_request, reply) =>
    renderPage(reply.code(404), 'error', {
      title: 'Not found',
      user: null,
      status: 404,
      message: 'There is no such admin page.',
    }),
  )

  scope.get('/static/admin.css', async (_request, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'max-age=300').send(STYLESHEET),
  )

  const origin = new URL(admin.baseUrl).origin
  /** Refuses posts from other origins (the CSRF token is checked as well). */
  const sameOrigin = async (request: FastifyRequest, reply: FastifyReply) => {
    const from = request.headers.origin
    if (from !== undefined && from !== origin) {
      return renderPage(reply.code(403), 'error', {
        title: 'Refused',
        user: null,
        status: 403,
        message: 'Cross-site request refused.',
      })
    }
  }
  const routes: AdminRoutes = {
    ctx,
    admin,
    /** Every state-changing form: same origin and a valid CSRF token. */
    protect: [sameOrigin, scope.csrfProtection],
    signedIn: requireAdmin(ctx, admin),
  }
  registerAuthRoutes(scope, routes)
  registerOverviewRoutes(scope, routes)
  registerCrewRoutes(scope, routes)
  registerSettingsRoutes(scope, routes)
  registerMaintenanceRoutes(scope, routes)
}

export interface AdminRoutes {
  ctx: HoldContext
  admin: AdminServices
  /** Same origin and a valid CSRF token: every state-changing form. */
  protect: preHandlerHookHandler[]
  /** A signed-in owner or crew admin (else a redirect to sign in, or the refusal). */
  signedIn: preHandlerHookHandler
}
