// `login`: the OAuth 2.0 device authorization grant (RFC 8628) against the registry's
// /auth/device/code and /auth/device/token. The user approves in a browser (the registry's
// /device page, after signing in with their PDS); the helper polls until then and stores
// the device secret it is given.
import { spawn } from 'node:child_process'
import { putAccount, updateCredentials } from './accounts.ts'
import type { HelperIo } from './protocol.ts'
import { registryHost, registryUrl } from './registry.ts'

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'

export interface DeviceCode {
  device_code: string
  user_code: string
  verification_uri: string
  verification_uri_complete?: string
  expires_in: number
  interval?: number
}

export interface DeviceGrant {
  secret: string
  did: string
  handle: string | undefined
}

export type LoginFailure =
  | 'unreachable'
  | 'unsupported'
  | 'bad_response'
  | 'expired_token'
  | 'access_denied'
  | 'invalid_grant'
  | 'timeout'

export class LoginError extends Error {
  readonly reason: LoginFailure
  constructor(reason: LoginFailure, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'LoginError'
    this.reason = reason
  }
}

export interface DeviceFlowOptions {
  /** The registry's base URL. */
  url: string
  clientName: string
  /** Told the code as soon as it exists (print it, open the browser). */
  onCode(code: DeviceCode): void | Promise<void>
  fetch?: typeof fetch
  sleep?: (ms: number) => Promise<void>
  now?: () => number
}

const DEFAULT_INTERVAL_S = 5
const SLOW_DOWN_S = 5
const REQUEST_TIMEOUT_MS = 30_000

async function postForm(
  fetcher: typeof fetch,
  url: string,
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  let response: Response
  try {
    response = await fetcher(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
      },
      body: new URLSearchParams(form).toString(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      redirect: 'error',
    })
  } catch (error) {
    throw new LoginError('unreachable', `cannot reach ${url}: ${(error as Error).message}`, {
      cause: error,
    })
  }
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = null
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    if (response.status === 404) {
      throw new LoginError('unsupported', `${url} answered 404: this registry has no device login`)
    }
    throw new LoginError(
      'bad_response',
      `${url} answered ${response.status} without a JSON object: ${text.slice(0, 200)}`,
    )
  }
  return { status: response.status, body: body as Record<string, unknown> }
}

function parseDeviceCode(url: string, body: Record<string, unknown>): DeviceCode {
  const { device_code, user_code, verification_uri, verification_uri_complete } = body
  const expires_in = Number(body.expires_in)
  const interval = body.interval === undefined ? undefined : Number(body.interval)
  if (
    typeof device_code !== 'string' ||
    typeof user_code !== 'string' ||
    typeof verification_uri !== 'string' ||
    !(verification_uri_complete === undefined || typeof verification_uri_complete === 'string') ||
    !Number.isFinite(expires_in) ||
    expires_in <= 0 ||
    (interval !== undefined && !(Number.isFinite(interval) && interval >= 0))
  ) {
    throw new LoginError('bad_response', `${url} answered an incomplete device code`)
  }
  return {
    device_code,
    user_code,
    verification_uri,
    ...(verification_uri_complete ? { verification_uri_complete } : {}),
    expires_in,
    ...(interval === undefined ? {} : { interval }),
  }
}

/**
 * Runs the device flow to its end: asks for a code, hands it to `onCode`, then polls the
 * token endpoint every `interval` seconds (five more after each `slow_down`) until the
 * user approves, denies, or the code expires.
 */
export async function runDeviceFlow(options: DeviceFlowOptions): Promise<DeviceGrant> {
  const fetcher = options.fetch ?? fetch
  const sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
  const now = options.now ?? Date.now
  const base = options.url.replace(/\/+$/, '')
  const codeUrl = `${base}/auth/device/code`
  const tokenUrl = `${base}/auth/device/token`

  const started = await postForm(fetcher, codeUrl, { client_name: options.clientName })
  if (started.status !== 200) {
    const error = typeof started.body.error === 'string' ? started.body.error : 'error'
    if (started.status === 404) {
      throw new LoginError(
        'unsupported',
        `${codeUrl} answered 404: this registry has no device login`,
      )
    }
    throw new LoginError(
      'bad_response',
      `${codeUrl} answered ${started.status} (${error}): ${String(started.body.error_description ?? '')}`,
    )
  }
  const code = parseDeviceCode(codeUrl, started.body)
  await options.onCode(code)

  const deadline = now() + code.expires_in * 1000
  let intervalS = code.interval ?? DEFAULT_INTERVAL_S
  for (;;) {
    await sleep(intervalS * 1000)
    if (now() >= deadline) {
      throw new LoginError('timeout', 'the code expired before it was approved; run login again')
    }
    const answer = await postForm(fetcher, tokenUrl, {
      grant_type: DEVICE_CODE_GRANT,
      device_code: code.device_code,
    })
    if (answer.status === 200) {
      const { access_token, did, handle } = answer.body
      if (typeof access_token !== 'string' || access_token === '' || typeof did !== 'string') {
        throw new LoginError('bad_response', `${tokenUrl} answered 200 without a secret and DID`)
      }
      return {
        secret: access_token,
        did,
        handle: typeof handle === 'string' && handle !== '' ? handle : undefined,
      }
    }
    const error = answer.body.error
    const description =
      typeof answer.body.error_description === 'string' ? `: ${answer.body.error_description}` : ''
    switch (error) {
      case 'authorization_pending':
        continue
      case 'slow_down':
        intervalS += SLOW_DOWN_S
        continue
      case 'expired_token':
        throw new LoginError('expired_token', `the code expired${description}; run login again`)
      case 'access_denied':
        throw new LoginError('access_denied', `the request was denied in the browser${description}`)
      case 'invalid_grant':
        throw new LoginError('invalid_grant', `the registry refused the code${description}`)
      default:
        throw new LoginError(
          'bad_response',
          `${tokenUrl} answered ${answer.status} (${String(error)})${description}`,
        )
    }
  }
}

/** Opens `url` in the user's browser when there is one; false when none could be started. */
export function openBrowser(url: string, env: Record<string, string | undefined>): boolean {
  let command: string
  let args: string[]
  if (env.BROWSER) {
    command = env.BROWSER
    args = [url]
  } else if (process.platform === 'darwin') {
    command = 'open'
    args = [url]
  } else if (process.platform === 'win32') {
    command = 'cmd'
    args = ['/c', 'start', '', url]
  } else if (env.DISPLAY || env.WAYLAND_DISPLAY) {
    command = 'xdg-open'
    args = [url]
  } else {
    return false
  }
  try {
    const child = spawn(command, args, { stdio: 'ignore', detached: true })
    child.on('error', () => {})
    child.unref()
    return true
  } catch {
    return false
  }
}

export interface LoginOptions {
  registry: string
  insecure: boolean
  openBrowser: boolean
  clientName: string
  credentialsFile: string
  io: HelperIo
  program: string
}

/** `login [registry]`: the device flow, then the account saved and made active. */
export async function login(options: LoginOptions): Promise<void> {
  const { io } = options
  const host = registryHost(options.registry)
  const url = registryUrl(options.registry, options.insecure)
  const grant = await runDeviceFlow({
    url,
    clientName: options.clientName,
    onCode: (code) => {
      const link = code.verification_uri_complete ?? code.verification_uri
      io.stdout(
        `To log in to ${host}, open this page and approve the code ${code.user_code}:\n` +
          `  ${link}\n`,
      )
      const opened = options.openBrowser && openBrowser(link, io.env)
      io.stdout(
        `${opened ? 'A browser was opened. ' : ''}Waiting for approval ` +
          `(the code expires in ${Math.round(code.expires_in / 60)} minutes)...\n`,
      )
    },
  })
  await updateCredentials(options.credentialsFile, (data) => {
    putAccount(data, host, url, {
      did: grant.did,
      ...(grant.handle ? { handle: grant.handle } : {}),
      secret: grant.secret,
      source: 'device',
      addedAt: new Date().toISOString(),
    })
    data.defaultRegistry = host
  })
  io.stdout(
    `Logged in to ${host} as ${grant.handle ? `${grant.handle} (${grant.did})` : grant.did}\n`,
  )
}
