// What a caller may do, from the hold's own records: the captain record (owner, public)
// and the crew records (member, permissions) in the hold's embedded repo.
import { type CaptainRecord, type CrewRecord, crewRkey, NSID, SELF_RKEY } from '@atcr/core/lexicons'
import type { HoldContext } from '../context.ts'
import { authRequired, forbidden } from '../xrpc/error.ts'
import type { HoldCaller } from './authenticate.ts'

export const PERMISSION = Object.freeze({
  blobRead: 'blob:read',
  blobWrite: 'blob:write',
  crewAdmin: 'crew:admin',
} as const)

/** Every permission there is; the owner holds them all, whatever its crew record says. */
export const ALL_PERMISSIONS: readonly string[] = Object.freeze(Object.values(PERMISSION))

/** A crew record of the hold's repo. */
export interface CrewEntry {
  uri: string
  rkey: string
  cid: string
  value: CrewRecord
}

const CREW_PAGE = 100

/** The captain record (written at every boot, so always present on a running hold). */
export async function getCaptain(ctx: HoldContext): Promise<CaptainRecord> {
  const record = await ctx.repo.reader.getRecord(NSID.holdCaptain, SELF_RKEY)
  if (!record) throw new Error('the hold has no captain record')
  return record.value as unknown as CaptainRecord
}

/**
 * The crew record of `did`, or null. Ours are keyed by `crewRkey(did)`; records written
 * by other implementations (or imported) may use other keys, so the rest are scanned.
 */
export async function getCrewMember(ctx: HoldContext, did: string): Promise<CrewEntry | null> {
  const { reader } = ctx.repo
  const keyed = await reader.getRecord(NSID.holdCrew, crewRkey(did))
  if (keyed && memberOf(keyed.value) === did) return toCrewEntry(keyed)
  let cursor: string | undefined
  for (;;) {
    const page = await reader.listRecords({
      collection: NSID.holdCrew,
      limit: CREW_PAGE,
      reverse: true,
      ...(cursor === undefined ? {} : { cursor }),
    })
    const found = page.find((record) => memberOf(record.value) === did)
    if (found) return toCrewEntry(found)
    if (page.length < CREW_PAGE) return null
    cursor = page[page.length - 1]?.rkey
  }
}

/** The permissions of `did`: all of them for the owner, a crew member's grants, or none. */
export async function permissionsOf(ctx: HoldContext, did: string): Promise<Set<string>> {
  const captain = await getCaptain(ctx)
  if (captain.owner === did) return new Set(ALL_PERMISSIONS)
  const crew = await getCrewMember(ctx, did)
  const granted = crew?.value.permissions
  return new Set(Array.isArray(granted) ? granted.filter((p) => typeof p === 'string') : [])
}

/**
 * Blob reads. A public hold lets anyone read; a private one needs an authenticated
 * caller, any DID: private gates anonymous access, not authenticated access (the
 * records that name the blobs are public anyway).
 */
export async function requireRead(ctx: HoldContext, caller: HoldCaller): Promise<void> {
  if (caller.did !== null) return
  const captain = await getCaptain(ctx)
  if (!captain.public) throw authRequired('This hold is private: authentication required')
}

/**
 * Blob writes: the owner, or a crew member with `blob:write`. The trusted AppView calling
 * as itself may not write blobs (it pushes with tokens of the pushing user). Returns the
 * writer's DID.
 */
export async function requireWrite(ctx: HoldContext, caller: HoldCaller): Promise<string> {
  const did = requireAuthenticated(caller)
  if (caller.trustedAppView) {
    throw forbidden('The AppView may not write blobs as itself; use the pushing user’s token')
  }
  const permissions = await permissionsOf(ctx, did)
  if (!permissions.has(PERMISSION.blobWrite)) {
    throw forbidden(`${did} may not write to this hold (needs crew membership with blob:write)`)
  }
  return did
}

/** Crew administration: the owner, or a crew member with `crew:admin`. Returns the DID. */
export async function requireCrewAdmin(ctx: HoldContext, caller: HoldCaller): Promise<string> {
  const did = requireAuthenticated(caller)
  const permissions = await permissionsOf(ctx, did)
  if (!permissions.has(PERMISSION.crewAdmin)) {
    throw forbidden(`${did} may not administer this hold's crew (needs crew:admin)`)
  }
  return did
}

/** The hold owner (the captain record's `owner`) only. Returns the DID. */
export async function requireOwner(ctx: HoldContext, caller: HoldCaller): Promise<string> {
  const did = requireAuthenticated(caller)
  const captain = await getCaptain(ctx)
  if (captain.owner !== did) throw forbidden(`Only the hold owner may do this, not ${did}`)
  return did
}

/** The configured trusted AppView, calling as itself. Returns its DID. */
export function requireTrustedAppView(_ctx: HoldContext, caller: HoldCaller): string {
  const did = requireAuthenticated(caller)
  if (!caller.trustedAppView) {
    throw forbidden(`Only the hold's trusted AppView may call this, not ${did}`)
  }
  return did
}

function requireAuthenticated(caller: HoldCaller): string {
  if (caller.did === null) throw authRequired()
  return caller.did
}

function memberOf(value: Record<string, unknown>): unknown {
  return value.member
}

function toCrewEntry(record: {
  uri: string
  rkey: string
  cid: string
  value: Record<string, unknown>
}): CrewEntry {
  return {
    uri: record.uri,
    rkey: record.rkey,
    cid: record.cid,
    value: record.value as unknown as CrewRecord,
  }
}
