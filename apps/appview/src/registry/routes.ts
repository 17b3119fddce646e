// The paths of the distribution API. Repository names contain slashes, so `/v2/*` is
// matched as a whole and taken apart here, from the right (the name is everything before
// the last `/manifests/`, `/blobs/`... of the path).
import { OciError } from '@atcr/core/oci'

export type RegistryRoute =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'tags'; name: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string; uploadId: string | null }
  | { kind: 'referrers'; name: string; digest: string }

const UPLOAD = /^(.+)\/blobs\/uploads(?:\/([^/]*))?$/
const LEAF = /^(.+)\/(manifests|blobs|referrers)\/([^/]+)$/
const TAGS = /^(.+)\/tags\/list$/

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new OciError('NAME_INVALID', { message: 'the path has malformed percent-encoding' })
  }
}

/** The route of a request path (without its query), or null for paths the API lacks. */
export function matchRoute(pathname: string): RegistryRoute | null {
  if (pathname === '/v2' || pathname === '/v2/') return { kind: 'base' }
  if (!pathname.startsWith('/v2/')) return null
  const rest = pathname.slice('/v2/'.length)
  if (rest === '_catalog') return { kind: 'catalog' }
  const upload = UPLOAD.exec(rest)
  if (upload) {
    const id = upload[2]
    return { kind: 'upload', name: decode(upload[1]!), uploadId: id ? decode(id) : null }
  }
  const tags = TAGS.exec(rest)
  if (tags) return { kind: 'tags', name: decode(tags[1]!) }
  const leaf = LEAF.exec(rest)
  if (!leaf) return null
  const name = decode(leaf[1]!)
  const value = decode(leaf[3]!)
  switch (leaf[2]) {
    case 'manifests':
      return { kind: 'manifest', name, reference: value }
    case 'blobs':
      return { kind: 'blob', name, digest: value }
    default:
      return { kind: 'referrers', name, digest: value }
  }
}

/** Path of a repository's resource, for Location headers (relative to the registry). */
export function registryPath(name: string, ...rest: string[]): string {
  return `/v2/${name}/${rest.join('/')}`
}
