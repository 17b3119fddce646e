// Crew membership changes: add, update (role, permissions, tier), remove. Each is one
// commit of the hold's repo, made under the record lock so that concurrent changes of one
// member do not overwrite each other. Callers check who may make the change.
import { type CrewRecord, crewRkey, NSID, validateRecord } from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import { type CrewEntry, getCaptain, getCrewMember, PERMISSION } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { defaultTier, tierByName } from '../quota/index.ts'
import { withRecordLock } from '../record-lock.ts'

/** What `requestCrew` grants when no permissions are asked for, and all it may grant. */
export const SELF_SERVICE_PERMISSIONS: readonly string[] = Object.freeze([
  PERMISSION.blobRead,
  PERMISSION.blobWrite,
])

export type CrewErrorCode = 'MemberNotFound' | 'OwnerProtected' | 'UnknownTier'

/** A crew change that cannot be made; `code` says why. */
export class CrewError extends Error {
  override name = 'CrewError'
  readonly code: CrewErrorCode
  constructor(code: CrewErrorCode, message: string) {
    super(message)
    this.code = code
  }
}

export interface NewCrewMember {
  member: string
  role: string
  permissions: readonly string[]
  /** A configured tier name; the default tier when omitted. */
  tier?: string
}

export interface CrewChange {
  role?: string
  permissions?: readonly string[]
  /** A configured tier name; null removes the field (the default tier applies). */
  tier?: string | null
}

export type AddCrewResult =
  | { status: 'created'; entry: CrewEntry }
  | { status: 'already_member'; entry: CrewEntry }

/** Adds a crew record for `member`, unless they already have one (which is left as it is). */
export async function addCrew(ctx: HoldContext, input: NewCrewMember): Promise<AddCrewResult> {
  const tier = input.tier ?? defaultTier(ctx.config)?.name
  if (input.tier !== undefined) assertTier(ctx, input.tier)
  return withRecordLock(ctx, async () => {
    const existing = await getCrewMember(ctx, input.member)
    if (existing) return { status: 'already_member', entry: existing }
    const value = crewRecord({
      member: input.member,
      role: input.role,
      permissions: [...input.permissions],
      addedAt: new Date().toISOString(),
      ...(tier === undefined ? {} : { tier }),
    })
    const rkey = crewRkey(input.member)
    const commit = await ctx.repo.writer.createRecord(NSID.holdCrew, rkey, asLexMap(value))
    const written = commit.writes[0]
    if (!written?.cid) throw new Error('the crew record was not written')
    return { status: 'created', entry: { uri: written.uri, rkey, cid: written.cid, value } }
  })
}

/** Changes a member's role, permissions or tier. The owner's role and permissions are fixed. */
export async function updateCrew(
  ctx: HoldContext,
  member: string,
  change: CrewChange,
): Promise<CrewEntry> {
  if (typeof change.tier === 'string') assertTier(ctx, change.tier)
  return withRecordLock(ctx, async () => {
    const existing = await requireMember(ctx, member)
    if (
      (change.role !== undefined || change.permissions !== undefined) &&
      (await isOwner(ctx, member))
    ) {
      throw new CrewError('OwnerProtected', "The hold owner's role and permissions cannot change")
    }
    const { tier: _dropped, ...rest } = existing.value
    const tier = change.tier === undefined ? existing.value.tier : change.tier
    const value = crewRecord({
      ...rest,
      ...(change.role === undefined ? {} : { role: change.role }),
      ...(change.permissions === undefined ? {} : { permissions: [...change.permissions] }),
      ...(tier === null || tier === undefined ? {} : { tier }),
    })
    const commit = await ctx.repo.writer.applyWrites([
      { action: 'update', collection: NSID.holdCrew, rkey: existing.rkey, record: asLexMap(value) },
    ])
    const cid = commit.writes[0]?.cid ?? existing.cid
    return { ...existing, cid, value }
  })
}

/** Removes a member's crew record. The owner cannot be removed. */
export async function removeCrew(ctx: HoldContext, member: string): Promise<CrewEntry> {
  return withRecordLock(ctx, async () => {
    const existing = await requireMember(ctx, member)
    if (await isOwner(ctx, member)) {
      throw new CrewError('OwnerProtected', 'The hold owner cannot leave the crew')
    }
    await ctx.repo.writer.deleteRecord(NSID.holdCrew, existing.rkey)
    return existing
  })
}

async function requireMember(ctx: HoldContext, member: string): Promise<CrewEntry> {
  const existing = await getCrewMember(ctx, member)
  if (!existing) throw new CrewError('MemberNotFound', `${member} is not in this hold's crew`)
  return existing
}

async function isOwner(ctx: HoldContext, did: string): Promise<boolean> {
  return (await getCaptain(ctx)).owner === did
}

function assertTier(ctx: HoldContext, name: string): void {
  if (!tierByName(ctx.config, name)) {
    throw new CrewError('UnknownTier', `This hold has no tier named ${name}`)
  }
}

function crewRecord(fields: Omit<CrewRecord, '$type'>): CrewRecord {
  return validateRecord(NSID.holdCrew, { ...fields, $type: NSID.holdCrew })
}

const asLexMap = (record: CrewRecord) => record as unknown as LexMap
