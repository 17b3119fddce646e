// The user's io.atcr.sailor.profile (rkey self), made on their first login with the
// AppView's default hold. An existing profile is never touched: it is the user's to edit.
import { NSID, SELF_RKEY, validateRecord } from '@atcr/core/lexicons'
import type { Agent } from '@atproto/api'
import { loadAtpApi } from './atp-api.ts'

export async function ensureSailorProfile(
  agent: Agent,
  did: string,
  defaultHoldDid: string | null,
): Promise<'created' | 'exists'> {
  if (await profileExists(agent, did)) return 'exists'
  const record = validateRecord(NSID.sailorProfile, {
    $type: NSID.sailorProfile,
    createdAt: new Date().toISOString(),
    ...(defaultHoldDid === null ? {} : { defaultHold: defaultHoldDid }),
  })
  try {
    await agent.com.atproto.repo.createRecord({
      repo: did,
      collection: NSID.sailorProfile,
      rkey: SELF_RKEY,
      record: { ...record },
    })
  } catch (error) {
    // Another login (or the user) may have made it meanwhile; the PDS then refuses ours.
    if (await profileExists(agent, did)) return 'exists'
    throw error
  }
  return 'created'
}

async function profileExists(agent: Agent, did: string): Promise<boolean> {
  try {
    await agent.com.atproto.repo.getRecord({
      repo: did,
      collection: NSID.sailorProfile,
      rkey: SELF_RKEY,
    })
    return true
  } catch (error) {
    const { XRPCError } = await loadAtpApi()
    if (error instanceof XRPCError && error.error === 'RecordNotFound') return false
    throw error
  }
}
