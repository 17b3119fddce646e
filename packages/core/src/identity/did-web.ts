import { isIP } from 'node:net'
import { InvalidDidError } from './errors.ts'
import type { IdentityMode } from './mode.ts'

const PREFIX = 'did:web:'

/**
 * The did:web for a public URL, per the did:web spec: the host, a port encoded as `%3A`,
 * and path segments joined with `:` (a `:` inside a segment is percent-encoded).
 * `https://hold.example.com` → `did:web:hold.example.com`;
 * `http://localhost:8080` → `did:web:localhost%3A8080`.
 */
export function didWebFromUrl(publicUrl: string | URL): string {
  const url = new URL(publicUrl)
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new InvalidDidError(url.href, 'did:web needs an http(s) URL')
  }
  if (url.hostname.startsWith('[')) {
    throw new InvalidDidError(url.href, 'did:web cannot name an IPv6 literal host')
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new InvalidDidError(url.href, 'did:web URLs carry no credentials, query or fragment')
  }
  const port = url.port ? `%3A${url.port}` : ''
  const segments = url.pathname.split('/').filter((segment) => segment !== '')
  const path = segments.map((segment) => `:${segment.replaceAll(':', '%3A')}`).join('')
  return `${PREFIX}${url.hostname}${port}${path}`
}

export interface DidWebUrlOptions {
  /**
   * In `dev` mode, hosts that cannot hold a public certificate (localhost, `*.localhost`,
   * single-label names such as docker service names, IP literals) use http. Default
   * `production`: always https, as the did:web spec says.
   */
  mode?: IdentityMode
}

/**
 * The base URL a did:web names (inverse of `didWebFromUrl`), without a trailing slash:
 * `did:web:localhost%3A8080` → `http://localhost:8080` in dev mode.
 */
export function didWebToUrl(did: string, options: DidWebUrlOptions = {}): URL {
  if (!did.startsWith(PREFIX)) throw new InvalidDidError(did, 'not a did:web')
  const [hostPart = '', ...segments] = did.slice(PREFIX.length).split(':')
  const host = hostPart.replace(/%3A/i, ':')
  if (!/^[a-z0-9.-]+(:\d{1,5})?$/i.test(host) || host.startsWith('.') || host.includes('..')) {
    throw new InvalidDidError(did, 'bad host in did:web')
  }
  let path = ''
  try {
    path = segments.map((segment) => `/${encodeURIComponent(decodeURIComponent(segment))}`).join('')
  } catch (cause) {
    throw new InvalidDidError(did, 'bad percent-encoding in did:web path', { cause })
  }
  if (segments.some((segment) => segment === '')) {
    throw new InvalidDidError(did, 'empty path segment in did:web')
  }
  const hostname = host.replace(/:\d+$/, '').toLowerCase()
  const scheme = options.mode === 'dev' && isLocalHost(hostname) ? 'http' : 'https'
  try {
    return new URL(`${scheme}://${host}${path}`)
  } catch (cause) {
    throw new InvalidDidError(did, 'did:web does not name a URL', { cause })
  }
}

/**
 * Where the DID document of a did:web lives: `/.well-known/did.json` for a bare host,
 * `<path>/did.json` for a did:web with a path.
 */
export function didWebDocumentUrl(did: string, options: DidWebUrlOptions = {}): URL {
  const base = didWebToUrl(did, options)
  const path = base.pathname === '/' ? '/.well-known/did.json' : `${base.pathname}/did.json`
  return new URL(path, base)
}

/** Whether a did:web carries a path (atproto allows only bare hosts). */
export function didWebHasPath(did: string): boolean {
  return did.startsWith(PREFIX) && did.indexOf(':', PREFIX.length) !== -1
}

function isLocalHost(hostname: string): boolean {
  return (
    hostname === 'localhost' ||
    hostname.endsWith('.localhost') ||
    !hostname.includes('.') ||
    isIP(hostname) !== 0
  )
}
