// Image names: `<identity>/<repository>`, where the identity is a handle
// (alice.bsky.social) or a DID. OCI clients refuse `:` in a name (docker, skopeo and podman
// all reject `registry/did:plc:xyz/app`), so a DID may also be spelled with `-` for `:`
// (`did-plc-xyz/app`); raw `did:plc:xyz` still works for plain HTTP clients.

import {
  explainRepositoryName,
  OciError,
  quoteInput,
  REPOSITORY_NAME_MAX_LENGTH,
} from '@atcr/core/oci'
import { isValidHandle } from '@atproto/syntax'

export interface ImageName {
  /** The name exactly as the client sent it (what registry token scopes refer to). */
  name: string
  /** The identity as written: a handle, or a DID (client-safe spellings already turned into DIDs). */
  identity: IdentityRef
  /** The repository within the identity, e.g. `app` or `tools/app`. */
  repository: string
}

export type IdentityRef = { kind: 'did'; did: string } | { kind: 'handle'; handle: string }

const RAW_DID = /^did:(plc|web):([a-zA-Z0-9._%-]+)$/
const CLIENT_SAFE_DID = /^did-(plc|web)-([a-z0-9._-]+)$/

/** The identity of a name's first component, or null when it is neither handle nor DID. */
export function parseIdentity(component: string): IdentityRef | null {
  const raw = RAW_DID.exec(component)
  if (raw) return { kind: 'did', did: component }
  const safe = CLIENT_SAFE_DID.exec(component)
  if (safe) return { kind: 'did', did: `did:${safe[1]}:${safe[2]}` }
  const handle = component.toLowerCase()
  return isValidHandle(handle) ? { kind: 'handle', handle } : null
}

/** Parses `<identity>/<repository>`; throws OciError NAME_INVALID with the reason. */
export function parseImageName(name: string): ImageName {
  // The name is echoed back cut short: a URL can carry kilobytes of it.
  const detail = { name: name.slice(0, 2 * REPOSITORY_NAME_MAX_LENGTH) }
  const slash = name.indexOf('/')
  if (slash <= 0) {
    throw new OciError('NAME_INVALID', {
      message: 'image names are <handle-or-DID>/<repository>',
      detail,
    })
  }
  const identity = parseIdentity(name.slice(0, slash))
  if (!identity) {
    throw new OciError('NAME_INVALID', {
      message: `${quoteInput(name.slice(0, slash))} is not a handle or DID`,
      detail,
    })
  }
  const repository = name.slice(slash + 1)
  const problem = explainRepositoryName(repository)
  if (problem) throw new OciError('NAME_INVALID', { message: problem, detail })
  return { name, identity, repository }
}

/** How a DID is written in image names that OCI clients accept. */
export function clientSafeDid(did: string): string {
  return did.replaceAll(':', '-')
}
