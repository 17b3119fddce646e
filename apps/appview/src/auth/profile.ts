// The user's io.atcr.sailor.profile (rkey self), made on their first login with the
// AppView's default hold. An existing profile is never touched: it is the user's to edit.
import { NSID, SELF_RKEY, validateRecord } from '@atcr/core/lexicons'
import { type Agent, Client, type DidString, XrpcResponseError } from '@atproto/lex-client'

export async function ensureSailorProfile(
  agent: Agent,
  did: string,
  defaultHoldDid: string | null,
): Promise<'created' | 'exists'> {
  const client = new Client(agent)
  const repo = did as DidString
  if (await profileExists(client, repo)) return 'exists'
  const record = validateRecord(NSID.sailorProfile, {
    $type: NSID.sailorProfile,
    createdAt: new Date().toISOString(),
    ...(defaultHoldDid === null ? {} : { defaultHold: defaultHoldDid }),
  })
  try {
    await client.createRecord({ ...record, $type: NSID.sailorProfile }, SELF_RKEY, { repo })
  } catch (error) {
    // Another login (or the user) may have made it meanwhile; the PDS then refuses ours.
    if (await profileExists(client, repo)) return 'exists'
    throw error
  }
  return 'created'
}

async function profileExists(client: Client, repo: DidString): Promise<boolean> {
  try {
    await client.getRecord(NSID.sailorProfile, SELF_RKEY, { repo })
    return true
  } catch (error) {
    if (error instanceof XrpcResponseError && error.error === 'RecordNotFound') return false
    throw error
  }
}
