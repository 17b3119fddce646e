// io.atcr.hold.requestCrew: join the crew. The captain record decides: with allowAllCrew
// any signed-in account joins, otherwise only the owner (RegistrationDisabled for the
// rest, whose request is kept for the captain to approve or deny on the admin pages). A member who asks again gets already_member and their record as it is.
//
// Self-registration grants at most blob:read and blob:write, and no privileged role
// (owner, admin): asking for more is an InvalidRequest, not a silent downgrade. The owner
// always gets the owner role and all permissions. New members get the default tier.
import { NSID, type RequestCrewOutput } from '@atcr/core/lexicons'
import type { FastifyInstance } from 'fastify'
import { authenticate, getCaptain, getCrewMember } from '../../../../access/index.ts'
import { OWNER_PERMISSIONS } from '../../../../bootstrap.ts'
import type { HoldContext } from '../../../../context.ts'
import { addCrew, SELF_SERVICE_PERMISSIONS } from '../../../../crew/index.ts'
import { recordCrewRequest } from '../../../../crew/requests.ts'
import { authRequired, invalidRequest, XrpcError } from '../../../error.ts'
import { output, parseInput } from '../../../lexicon.ts'

const DEFAULT_ROLE = 'member'
const PRIVILEGED_ROLES = new Set(['owner', 'admin'])

export function register(app: FastifyInstance, ctx: HoldContext): void {
  app.post(`/xrpc/${NSID.holdRequestCrew}`, async (request) => {
    const caller = await authenticate(ctx, request, NSID.holdRequestCrew)
    if (caller.did === null) throw authRequired('Sign in to join the crew')
    const input = parseInput(NSID.holdRequestCrew, request.body)
    const did = caller.did

    const existing = await getCrewMember(ctx, did)
    if (existing) return alreadyMember(existing.uri, existing.cid)

    const captain = await getCaptain(ctx)
    const isOwner = captain.owner === did
    let role = input.role ?? DEFAULT_ROLE
    let permissions = input.permissions ?? [...SELF_SERVICE_PERMISSIONS]
    if (isOwner) {
      role = 'owner'
      permissions = [...OWNER_PERMISSIONS]
    } else {
      if (PRIVILEGED_ROLES.has(role)) {
        throw invalidRequest(`The role ${role} cannot be self-assigned`)
      }
      const refused = permissions.filter((p) => !SELF_SERVICE_PERMISSIONS.includes(p))
      if (refused.length > 0) {
        throw invalidRequest(`These permissions cannot be self-assigned: ${refused.join(', ')}`)
      }
    }
    if (!captain.allowAllCrew && !isOwner) {
      const kept = await recordCrewRequest(ctx.db, {
        did,
        role,
        permissions,
        requestedAt: Date.now(),
      })
      throw new XrpcError(
        403,
        'RegistrationDisabled',
        kept
          ? 'This hold does not admit new crew members by itself: your request waits for its captain'
          : 'This hold does not take new crew members',
      )
    }

    const added = await addCrew(ctx, { member: did, role, permissions })
    if (added.status === 'already_member') return alreadyMember(added.entry.uri, added.entry.cid)
    return output(NSID.holdRequestCrew, {
      status: 'created',
      uri: added.entry.uri,
      cid: added.entry.cid,
      message: 'Welcome aboard: you are now in the crew of this hold',
    })
  })
}

function alreadyMember(uri: string, cid: string): RequestCrewOutput {
  return output(NSID.holdRequestCrew, {
    status: 'already_member',
    uri,
    cid,
    message: 'You are already in the crew of this hold',
  })
}
