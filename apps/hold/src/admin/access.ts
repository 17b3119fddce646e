// Who may use the admin pages: the captain's owner and crew members holding crew:admin,
// checked at sign-in and again on every request (a member whose permission was removed is
// out at once). The browser session is an httpOnly cookie scoped to /admin.
import type { WebUser } from '@atcr/core/oauth'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { PERMISSION, permissionsOf } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { renderPage } from './render.ts'
import { ADMIN_PREFIX, type AdminServices, LOGIN_PATH } from './services.ts'

export const SESSION_COOKIE = 'atcr_hold_admin'

declare module 'fastify' {
  interface FastifyRequest {
    adminUser?: WebUser
  }
}

export async function mayAdminister(ctx: HoldContext, did: string): Promise<boolean> {
  return (await permissionsOf(ctx, did)).has(PERMISSION.crewAdmin)
}

export function sessionCookieOptions(admin: AdminServices) {
  return {
    path: ADMIN_PREFIX,
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: new URL(admin.baseUrl).protocol === 'https:',
  }
}

/**
 * preHandler of every admin page but sign-in: no session → to the sign-in page (no query:
 * nothing to tamper with); a session whose DID may no longer administer → the refusal.
 */
export function requireAdmin(ctx: HoldContext, admin: AdminServices) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const user = await admin.sessions.find(request.cookies[SESSION_COOKIE])
    if (!user) return reply.redirect(LOGIN_PATH, 303)
    if (!(await mayAdminister(ctx, user.did))) return refuse(ctx, reply, user)
    request.adminUser = user
  }
}

/** The page for someone signed in who is neither the owner nor a crew admin. */
export async function refuse(ctx: HoldContext, reply: FastifyReply, user: WebUser) {
  return renderPage(reply.code(403), 'refused', {
    title: 'Not allowed',
    user: null,
    signedInAs: user.handle ?? user.did,
    holdDid: ctx.identity.did,
  })
}
