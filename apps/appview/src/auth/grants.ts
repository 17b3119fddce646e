// What a registry token grants, from the scopes a client asked for: anyone may pull any
// well-formed image name (the hold decides later whether the blobs are readable); only the
// owner of the name's identity may push to it or delete from it.
import { mergeScopes, type TokenScope } from '@atcr/core/oci'
import { type IdentityRef, parseImageName } from '../names.ts'

const OWNER_ACTIONS: ReadonlySet<string> = new Set(['pull', 'push', 'delete'])
const ANYONE_ACTIONS: ReadonlySet<string> = new Set(['pull'])

/** Resolves a handle to its DID (throws when it cannot). */
export type HandleToDid = (handle: string) => Promise<string>

/**
 * The scopes granted to `callerDid` (null: anonymous) out of `requested`: for each
 * `repository:<name>` the requested actions it may have, `registry:catalog` as asked, and
 * nothing for names that do not parse or resource types the registry does not know.
 */
export async function grantScopes(
  requested: readonly TokenScope[],
  callerDid: string | null,
  resolveHandle: HandleToDid,
): Promise<TokenScope[]> {
  const granted: TokenScope[] = []
  for (const scope of mergeScopes(requested)) {
    let allowed: ReadonlySet<string>
    if (scope.type === 'repository') {
      let identity: IdentityRef
      try {
        identity = parseImageName(scope.name).identity
      } catch {
        continue
      }
      const owner = callerDid !== null && (await ownerDid(identity, resolveHandle)) === callerDid
      allowed = owner ? OWNER_ACTIONS : ANYONE_ACTIONS
    } else if (scope.type === 'registry' && scope.name === 'catalog') {
      allowed = scope.actions
    } else {
      continue
    }
    const actions = scope.actions.has('*')
      ? new Set(allowed)
      : new Set([...scope.actions].filter((action) => allowed.has(action)))
    if (actions.size > 0) granted.push({ ...scope, actions })
  }
  return granted
}

async function ownerDid(identity: IdentityRef, resolveHandle: HandleToDid): Promise<string | null> {
  if (identity.kind === 'did') return identity.did
  try {
    return await resolveHandle(identity.handle)
  } catch {
    // A handle that does not resolve belongs to nobody we can prove: pull only.
    return null
  }
}
