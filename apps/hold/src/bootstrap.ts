// First-boot (and every-boot) records of the hold's repo: the captain record from config,
// the owner's crew record, and the hold's profile. Values set in config update them (the
// captain's flags only when set: null keeps what the admin pages wrote); nothing is
// duplicated, and a boot with nothing changed writes no commit.

import {
  type CaptainRecord,
  type CrewRecord,
  crewRkey,
  NSID,
  SELF_RKEY,
  validateRecord,
} from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import type { HoldConfig } from './config.ts'
import { HoldConfigError, type HoldIdentity } from './identity.ts'
import type { HoldRepo } from './pds/index.ts'

/** A validated record is a plain JSON map; its interface type just lacks an index signature. */
const asLexMap = (record: object) => record as LexMap

/** The Bluesky profile collection: not an ATCR lexicon, the hold keeps one like any account. */
export const BSKY_PROFILE_NSID = 'app.bsky.actor.profile'

/** Crew permissions the owner holds, and those `requestCrew` grants by default. */
export const OWNER_PERMISSIONS = ['blob:read', 'blob:write', 'crew:admin']

export async function bootstrapRecords(
  repo: HoldRepo,
  config: HoldConfig,
  identity: HoldIdentity,
): Promise<void> {
  const owner = config.registration.owner_did
  if (!owner) {
    throw new HoldConfigError('registration.owner_did: the hold needs an owner DID (the captain)')
  }
  const stored = await repo.reader.getRecord(NSID.holdCaptain, SELF_RKEY)
  const previous = stored?.value as Partial<CaptainRecord> | undefined
  const successor = config.registration.successor ?? previous?.successor
  const captain = validateRecord(NSID.holdCaptain, {
    $type: NSID.holdCaptain,
    owner,
    public: config.registration.public ?? previous?.public ?? false,
    allowAllCrew: config.registration.allow_all_crew ?? previous?.allowAllCrew ?? false,
    enableBlueskyPosts:
      config.registration.enable_bluesky_posts ?? previous?.enableBlueskyPosts ?? false,
    deployedAt: previous?.deployedAt ?? new Date().toISOString(),
    ...(config.registration.region ? { region: config.registration.region } : {}),
    ...(successor ? { successor } : {}),
  })

  const ownerCrewKey = crewRkey(owner)
  const storedCrew = (await repo.reader.getRecord(NSID.holdCrew, ownerCrewKey))?.value as
    | Partial<CrewRecord>
    | undefined
  const crew = validateRecord(NSID.holdCrew, {
    $type: NSID.holdCrew,
    member: owner,
    role: 'owner',
    permissions: OWNER_PERMISSIONS,
    addedAt: storedCrew?.addedAt ?? captain.deployedAt,
    ...(storedCrew?.tier ? { tier: storedCrew.tier } : {}),
  })

  const profile = {
    $type: BSKY_PROFILE_NSID,
    displayName:
      config.registration.display_name || identity.handle || new URL(identity.publicUrl).host,
    description: `ATCR hold: container image storage at ${identity.publicUrl}`,
  }

  // importRecords skips records identical to the stored ones: an unchanged boot commits nothing.
  await repo.writer.importRecords([
    { collection: NSID.holdCaptain, rkey: SELF_RKEY, value: asLexMap(captain) },
    { collection: NSID.holdCrew, rkey: ownerCrewKey, value: asLexMap(crew) },
    { collection: BSKY_PROFILE_NSID, rkey: SELF_RKEY, value: profile },
  ])
}
