// What every page route shares: who is signed in, the page frame (title, user, CSRF token),
// the same-origin + CSRF guard for forms, and "sign in first" redirects.
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import { SESSION_COOKIE, type WebUser } from '../auth/web-sessions.ts'
import type { AppViewContext } from '../context.ts'
import { type PageFrame, sendErrorPage, sendPage } from './views.ts'

declare module 'fastify' {
  interface FastifyRequest {
    webUser?: WebUser | null
  }
}

export interface WebKit {
  ctx: AppViewContext
  base: URL
  currentUser(request: FastifyRequest): Promise<WebUser | null>
  /** The frame of a page for this request (a fresh CSRF token for signed-in users). */
  frame(request: FastifyRequest, reply: FastifyReply, title: string): Promise<PageFrame>
  page(
    request: FastifyRequest,
    reply: FastifyReply,
    view: string,
    title: string,
    data?: Record<string, unknown>,
  ): Promise<FastifyReply>
  error(
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
    message: string,
  ): Promise<FastifyReply>
  /** Route options for a state-changing form: same origin and a valid CSRF token. */
  protect: { preHandler: preHandlerHookHandler[] }
  /** The signed-in user, or null after answering with a redirect to sign in (and back). */
  requireUser(request: FastifyRequest, reply: FastifyReply): Promise<WebUser | null>
}

export function createWebKit(app: FastifyInstance, ctx: AppViewContext): WebKit {
  const base = new URL(ctx.config.server.base_url)
  const currentUser = async (request: FastifyRequest): Promise<WebUser | null> => {
    if (request.webUser === undefined) {
      request.webUser = await ctx.webSessions.find(request.cookies[SESSION_COOKIE])
    }
    return request.webUser
  }
  const frame = async (
    request: FastifyRequest,
    reply: FastifyReply,
    title: string,
  ): Promise<PageFrame> => {
    const user = await currentUser(request)
    return { title, user, csrfToken: user ? reply.generateCsrf() : undefined }
  }
  /** Refuses state changes from other origins (the CSRF token is checked as well). */
  const sameOrigin = async (request: FastifyRequest, reply: FastifyReply) => {
    const origin = request.headers.origin
    if (origin !== undefined && origin !== base.origin) {
      return sendErrorPage(reply, 403, 'Cross-site request refused.')
    }
  }
  return {
    ctx,
    base,
    currentUser,
    frame,
    page: async (request, reply, view, title, data = {}) =>
      sendPage(reply, view, await frame(request, reply, title), data),
    error: async (request, reply, status, message) => {
      const { user, csrfToken } = await frame(request, reply, '')
      return sendErrorPage(reply, status, message, { user, csrfToken })
    },
    protect: { preHandler: [sameOrigin, app.csrfProtection] as preHandlerHookHandler[] },
    requireUser: async (request, reply) => {
      const user = await currentUser(request)
      if (!user) {
        const back = encodeURIComponent(request.url)
        await reply.redirect(`/auth/oauth/login?return_to=${back}`, 303)
        return null
      }
      return user
    },
  }
}

/** A string field of a form body or query, '' when absent. */
export function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | undefined)?.[name]
  return typeof value === 'string' ? value : ''
}
