// An AppView's auth surface on loopback for the auth tests: the real services and /auth
// routes built from a real config, on a data directory that survives restarts.
import type { AddressInfo } from 'node:net'
import type { CapturedLogs } from '@atcr/core/log'
import type { StaticDns } from '@atcr/testkit'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import { createAuthServices, registerAuthRoutes } from '../src/auth/index.ts'
import { type AppViewConfig, appviewConfig } from '../src/config.ts'
import { type AppViewContext, closeBase, createBase } from '../src/context.ts'

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
  const base = await createBase(config, options.logs.logger, options.dns)
  let app: FastifyInstance | undefined
  try {
    const ctx: AppViewContext = { ...base, ...(await createAuthServices(base)) }
    app = Fastify({ loggerInstance: ctx.logger.child({ subsystem: 'http' }) as FastifyBaseLogger })
    await registerAuthRoutes(app, ctx)
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as AddressInfo
    const server = app
    return {
      url: `http://127.0.0.1:${port}`,
      ctx,
      config,
      close: async () => {
        await server.close()
        await closeBase(base)
      },
    }
  } catch (error) {
    await app?.close()
    await closeBase(base)
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
