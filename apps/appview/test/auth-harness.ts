// A real AppView on loopback for the auth tests, on a data directory that survives restarts.
import type { CapturedLogs } from '@atcr/core/log'
import type { StaticDns } from '@atcr/testkit'
import type { FastifyRequest } from 'fastify'
import { type AppViewConfig, appviewConfig } from '../src/config.ts'
import type { AppViewContext } from '../src/context.ts'
import { AppView } from '../src/index.ts'

export interface AuthAppView {
  url: string
  ctx: AppViewContext
  config: AppViewConfig
  close(): Promise<void>
}

export interface AuthAppViewOptions {
  dataDir: string
  plcUrl: string
  dns: StaticDns
  logs: CapturedLogs
  defaultHoldDid?: string | null
  tokenExpiration?: number
  /** The AppView's clock (tests move it forward instead of sleeping). */
  now?: () => number
}

export async function startAuthAppView(options: AuthAppViewOptions): Promise<AuthAppView> {
  const config = appviewConfig.load({
    env: {},
    overrides: {
      server: {
        data_dir: options.dataDir,
        mode: 'dev',
        host: '127.0.0.1',
        port: 0,
        base_url: 'http://registry.test:5000',
      },
      identity: { plc_directory_url: options.plcUrl },
      registry: {
        default_hold_did: options.defaultHoldDid ?? null,
        token_expiration: options.tokenExpiration ?? 300,
      },
    },
  })
  const appview = await AppView.create(config, {
    logger: options.logs.logger,
    dns: options.dns,
    ...(options.now ? { overrides: { now: options.now } } : {}),
  })
  try {
    const url = await appview.start()
    return { url, ctx: appview.ctx, config, close: () => appview.destroy() }
  } catch (error) {
    await appview.destroy()
    throw error
  }
}

/** A request carrying only an Authorization header, as `RegistryAuth.authenticate` reads it. */
export function requestWith(authorization?: string): FastifyRequest {
  const headers = authorization === undefined ? {} : { authorization }
  return { headers } as unknown as FastifyRequest
}

export function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

export interface TokenResponse {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

/** GET /auth/token with the given scopes (each its own `scope` parameter). */
export async function getToken(
  url: string,
  options: { scopes?: string[]; authorization?: string; service?: string } = {},
): Promise<TokenResponse> {
  const query = new URLSearchParams({ service: options.service ?? 'registry.test:5000' })
  for (const scope of options.scopes ?? []) query.append('scope', scope)
  const headers: Record<string, string> = {}
  if (options.authorization) headers.authorization = options.authorization
  const response = await fetch(`${url}/auth/token?${query}`, { headers })
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  }
}

/** The access claim of a registry token, as `type:name:actions` strings. */
export function accessOf(token: unknown): string[] {
  assertString(token)
  const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
    access: { type: string; name: string; actions: string[] }[]
  }
  return payload.access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`)
}

function assertString(value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`expected a string, got ${typeof value}`)
}

/** Ends a session at the PDS, as signing out everywhere would (com.atproto.server.deleteSession). */
export async function endPdsSession(pdsUrl: string, refreshJwt: string): Promise<void> {
  const res = await fetch(new URL('/xrpc/com.atproto.server.deleteSession', pdsUrl), {
    method: 'POST',
    headers: { authorization: `Bearer ${refreshJwt}` },
  })
  if (!res.ok) throw new Error(`deleteSession answered ${res.status}: ${await res.text()}`)
}
