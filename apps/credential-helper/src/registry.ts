// Registry names as clients hand them over (`atcr.io`, `https://atcr.io/v1/`,
// `127.0.0.1:5000`) reduced to one key, the host, and the URL the helper talks to.

/** The registry user commands use when none is named and none is remembered. */
export const DEFAULT_REGISTRY = 'atcr.io'

export class RegistryNameError extends Error {
  override name = 'RegistryNameError'
}

/** Input echoed in one line: quoted (so a newline cannot start another), and cut short. */
function quoted(input: string): string {
  return JSON.stringify(input.length > 200 ? `${input.slice(0, 200)}…` : input)
}

/** `https://Atcr.io/v1/` → `atcr.io`; `127.0.0.1:5000` stays; throws on anything else. */
export function registryHost(serverUrl: string): string {
  const trimmed = serverUrl.trim()
  if (trimmed === '') throw new RegistryNameError('no registry named')
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `https://${trimmed}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new RegistryNameError(`not a registry host or URL: ${quoted(serverUrl)}`)
  }
  if (
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username ||
    url.password ||
    url.hostname === ''
  ) {
    throw new RegistryNameError(`not a registry host or URL: ${quoted(serverUrl)}`)
  }
  return url.host.toLowerCase()
}

/** Whether a host (with or without port) is this machine: plain HTTP is used for those. */
export function isLoopbackHost(host: string): boolean {
  const hostname = new URL(`http://${host}`).hostname
  return (
    hostname === 'localhost' ||
    hostname.endsWith('.localhost') ||
    hostname === '[::1]' ||
    /^127(\.\d{1,3}){3}$/.test(hostname)
  )
}

/** Whether the environment asks for plain HTTP (`ATCR_INSECURE=1` or `true`). */
export function insecureFromEnv(env: Record<string, string | undefined>): boolean {
  const value = env.ATCR_INSECURE?.toLowerCase()
  return value === '1' || value === 'true' || value === 'yes'
}

/**
 * The registry's base URL: `https://host`, or `http://host` for loopback hosts and when
 * `insecure` is asked for. A full URL given by the user keeps its scheme.
 */
export function registryUrl(serverUrl: string, insecure = false): string {
  const host = registryHost(serverUrl)
  const explicit = /^(https?):\/\//i.exec(serverUrl.trim())?.[1]?.toLowerCase()
  const scheme = explicit ?? (insecure || isLoopbackHost(host) ? 'http' : 'https')
  return `${scheme}://${host}`
}
