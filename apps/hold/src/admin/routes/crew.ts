// Crew pages: list, add (by handle or DID), change role, permissions and tier, remove.
// Every change is one commit through the hold's repo writer (crew/).
import { IdentityError } from '@atcr/core/identity'
import { isValidDid } from '@atproto/syntax'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ALL_PERMISSIONS, getCaptain } from '../../access/index.ts'
import { addCrew, CrewError, removeCrew, updateCrew } from '../../crew/index.ts'
import { deleteCrewRequest, getCrewRequest } from '../../crew/requests.ts'
import { ASSIGNABLE_ROLES, CREW_SHOWN, listTiers, loadCrew } from '../crew.ts'
import type { AdminRoutes } from '../index.ts'
import { renderPage } from '../render.ts'

type Form = Record<string, string | string[] | undefined>

const text = (form: Form, name: string) => {
  const value = form[name]
  return (Array.isArray(value) ? value[0] : value)?.trim() ?? ''
}
const list = (form: Form, name: string) => {
  const value = form[name]
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

/** A user's mistake in a crew form: shown on the page with a 400 or 404. */
class FormError extends Error {
  readonly status: number
  constructor(message: string, status = 400) {
    super(message)
    this.status = status
  }
}

export function registerCrewRoutes(scope: FastifyInstance, routes: AdminRoutes): void {
  const { ctx, signedIn, protect } = routes
  const page = async (
    request: FastifyRequest,
    reply: FastifyReply,
    notice?: { kind: 'ok' | 'error'; text: string },
  ) => {
    const crew = await loadCrew(ctx)
    return renderPage(reply, 'crew', {
      title: 'Crew',
      user: request.adminUser ?? null,
      section: 'crew',
      crew: crew.rows,
      requests: crew.requests,
      truncated: crew.truncated,
      shown: CREW_SHOWN,
      tiers: listTiers(ctx.config),
      roles: ASSIGNABLE_ROLES,
      permissions: ALL_PERMISSIONS,
      notice: notice ?? null,
    })
  }
  /** Runs a change; a form or crew error is shown on the page, anything else is a 500. */
  const change =
    (run: (form: Form) => Promise<string>) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      const form = (request.body ?? {}) as Form
      try {
        const done = await run(form)
        request.log.info({ by: request.adminUser?.did, change: done }, 'admin changed the crew')
        return page(request, reply, { kind: 'ok', text: done })
      } catch (error) {
        if (error instanceof FormError) {
          return page(request, reply.code(error.status), { kind: 'error', text: error.message })
        }
        if (error instanceof CrewError) {
          const status = error.code === 'MemberNotFound' ? 404 : 400
          return page(request, reply.code(status), { kind: 'error', text: error.message })
        }
        throw error
      }
    }

  const role = (form: Form) => {
    const value = text(form, 'role')
    if (!(ASSIGNABLE_ROLES as readonly string[]).includes(value)) {
      throw new FormError(`Choose a role: ${ASSIGNABLE_ROLES.join(', ')}`)
    }
    return value
  }
  const permissions = (form: Form) => {
    const chosen = list(form, 'permissions')
    const unknown = chosen.filter((p) => !ALL_PERMISSIONS.includes(p))
    if (unknown.length > 0) throw new FormError(`Unknown permissions: ${unknown.join(', ')}`)
    return [...new Set(chosen)]
  }
  const tier = (form: Form) => {
    const value = text(form, 'tier')
    return value === '' ? null : value
  }
  const memberDid = (form: Form) => {
    const member = text(form, 'member')
    if (!isValidDid(member)) throw new FormError('No such crew member', 404)
    return member
  }

  scope.get('/crew', { preHandler: signedIn }, (request, reply) => page(request, reply))

  scope.post(
    '/crew',
    { preHandler: [...protect, signedIn] },
    change(async (form) => {
      const who = text(form, 'member').replace(/^@/, '')
      if (!who) throw new FormError('Enter a handle or a DID')
      let did: string
      try {
        // A DID must resolve too: no crew record for a DID nobody can sign in as.
        did = who.startsWith('did:')
          ? (await ctx.resolver.resolveDid(who)).did
          : await ctx.resolver.resolveHandle(who.toLowerCase())
      } catch (error) {
        if (error instanceof IdentityError)
          throw new FormError(`${who} does not resolve: ${error.message}`)
        throw error
      }
      const chosenTier = tier(form)
      const added = await addCrew(ctx, {
        member: did,
        role: role(form),
        permissions: permissions(form),
        ...(chosenTier === null ? {} : { tier: chosenTier }),
      })
      if (added.status === 'already_member') throw new FormError(`${who} is already in the crew`)
      await deleteCrewRequest(ctx.db, did)
      return `${who} joined the crew`
    }),
  )

  scope.post(
    '/crew/update',
    { preHandler: [...protect, signedIn] },
    change(async (form) => {
      const member = memberDid(form)
      // The owner's role and permissions are fixed: only their tier is taken from the form.
      const isOwner = (await getCaptain(ctx)).owner === member
      await updateCrew(
        ctx,
        member,
        isOwner
          ? { tier: tier(form) }
          : { role: role(form), permissions: permissions(form), tier: tier(form) },
      )
      return `${member} updated`
    }),
  )

  scope.post(
    '/crew/remove',
    { preHandler: [...protect, signedIn] },
    change(async (form) => {
      const member = memberDid(form)
      await removeCrew(ctx, member)
      return `${member} left the crew`
    }),
  )

  scope.post(
    '/crew/requests/approve',
    { preHandler: [...protect, signedIn] },
    change(async (form) => {
      const did = memberDid(form)
      const request = await getCrewRequest(ctx.db, did)
      if (!request) throw new FormError(`No pending request from ${did}`, 404)
      await addCrew(ctx, { member: did, role: request.role, permissions: request.permissions })
      await deleteCrewRequest(ctx.db, did)
      return `${did} joined the crew (request approved)`
    }),
  )

  scope.post(
    '/crew/requests/deny',
    { preHandler: [...protect, signedIn] },
    change(async (form) => {
      const did = memberDid(form)
      if (!(await deleteCrewRequest(ctx.db, did))) {
        throw new FormError(`No pending request from ${did}`, 404)
      }
      return `${did}'s request was denied`
    }),
  )
}
