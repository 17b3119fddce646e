// The whole registry on loopback for the /v2 tests: a real PLC and PDS with two accounts,
// a real hold (the atcr-hold executable in a child process, filesystem or s3rver storage),
// and a real AppView in this process; plus raw-HTTP helpers that get registry tokens the
// way clients do.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CapturedLogs, captureLogger } from '@atcr/core/log'
import {
  freePort,
  type HoldProcess,
  type S3FaultProxy,
  type StaticDns,
  startHoldProcess,
  startNetwork,
  startS3,
  startS3FaultProxy,
  startTcpProxy,
  staticDns,
  type TcpProxy,
  type TestAccount,
  type TestNetwork,
  type TestS3,
} from '@atcr/testkit'
import { appviewConfig } from '../src/config.ts'
import { AppView } from '../src/index.ts'
import { clientSafeDid } from '../src/names.ts'

export interface RegistryStack {
  net: TestNetwork
  alice: TestAccount
  bob: TestAccount
  hold: HoldProcess
  s3: TestS3 | null
  /** The proxy between the hold and s3rver (option `s3Proxy`), else null. */
  s3Proxy: TcpProxy | null
  /** The proxy that breaks chosen S3 requests (option `s3Faults`), else null. */
  s3Faults: S3FaultProxy | null
  appview: AppView
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `127.0.0.1:PORT`, the registry host in image references. */
  host: string
  dns: StaticDns
  /** The AppView's log lines (show them when a test fails: `logs.flushIfFailed(t)`). */
  logs: CapturedLogs
  /**
   * Another AppView on the same network and hold, with its own (empty) database: what a
   * second AppView of the network sees of the content pushed through the first.
   */
  anotherAppView(options?: {
    mode?: 'dev' | 'production'
    oauth?: { permission_set?: boolean }
  }): Promise<RegistryStack>
  /** `did-plc-.../<repository>`: a name OCI clients accept. */
  nameOf(account: TestAccount, repository: string): string
  /** A registry token from /auth/token (anonymous when `account` is null). */
  token(account: TestAccount | null, scopes: string[]): Promise<string>
  /** fetch against the registry with a token for `scopes` (anonymous: no account). */
  request(
    path: string,
    init?: RequestInit & { as?: TestAccount | null; scopes?: string[] },
  ): Promise<Response>
  close(): Promise<void>
}

export interface RegistryStackOptions {
  storage?: 'filesystem' | 's3'
  /** With s3 storage: the hold reaches s3rver through a TCP proxy (`stack.s3Proxy`) that can cut it off. */
  s3Proxy?: boolean
  /** With s3 storage: the hold reaches s3rver through an HTTP proxy (`stack.s3Faults`) that answers chosen requests with S3 errors, stalls them or cuts their bodies. */
  s3Faults?: boolean
  holdPublic?: boolean
  allowAllCrew?: boolean
  presignedRedirects?: boolean
  /** Config overrides of the AppView's registry section. */
  registry?: {
    max_manifest_size?: number
    upload_part_size?: number
    token_expiration?: number
    hold_health_interval?: number
  }
  /** Config overrides of the AppView's oauth section. */
  oauth?: { permission_set?: boolean }
  /** Extra config of the hold, merged section by section. */
  holdConfig?: Record<string, Record<string, unknown>>
  /** Environment of the hold process (`ATCR_HOLD_*` overrides reach inside a section). */
  holdEnv?: Record<string, string>
}

export async function startRegistryStack(
  options: RegistryStackOptions = {},
): Promise<RegistryStack> {
  const cleanups: (() => Promise<unknown>)[] = []
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
  }
  try {
    const net = await startNetwork()
    cleanups.push(() => net.close())
    const alice = await net.pds.createAccount('alice.test')
    const bob = await net.pds.createAccount('bob.test')
    const s3 = options.storage === 's3' ? await startS3() : null
    if (s3) cleanups.push(() => s3.close())
    const s3Proxy =
      s3 && options.s3Proxy ? await startTcpProxy(Number(new URL(s3.endpoint).port)) : null
    if (s3Proxy) cleanups.push(() => s3Proxy.close())
    const s3Faults =
      s3 && options.s3Faults ? await startS3FaultProxy(Number(new URL(s3.endpoint).port)) : null
    if (s3Faults) cleanups.push(() => s3Faults.close())
    const s3Endpoint = s3Proxy ? `http://${s3Proxy.host}` : s3Faults ? s3Faults.endpoint : null
    const hold = await startHoldProcess({
      plcUrl: net.plc.url,
      ownerDid: alice.did,
      storage: s3 ? { s3: s3Endpoint ? { ...s3, endpoint: s3Endpoint } : s3 } : 'filesystem',
      public: options.holdPublic ?? true,
      allowAllCrew: options.allowAllCrew ?? true,
      ...(options.presignedRedirects === undefined
        ? {}
        : { presignedRedirects: options.presignedRedirects }),
      ...(options.holdConfig ? { config: options.holdConfig } : {}),
      ...(options.holdEnv ? { env: options.holdEnv } : {}),
    })
    cleanups.push(() => hold.close())

    const dns = staticDns({
      txt: {
        '_atproto.alice.test': [`did=${alice.did}`],
        '_atproto.bob.test': [`did=${bob.did}`],
      },
    })
    const startAppView = async (
      mode: 'dev' | 'production' = 'dev',
      oauth: { permission_set?: boolean } = options.oauth ?? {},
    ) => {
      const dataDir = await mkdtemp(join(tmpdir(), 'atcr-appview-'))
      cleanups.push(() => rm(dataDir, { recursive: true, force: true }))
      const port = await freePort()
      const host = `127.0.0.1:${port}`
      const config = appviewConfig.load({
        env: {},
        overrides: {
          server: { data_dir: dataDir, mode, host: '127.0.0.1', port, base_url: `http://${host}` },
          identity: { plc_directory_url: net.plc.url },
          registry: { default_hold_did: hold.did, ...options.registry },
          oauth,
        },
      })
      const logs = captureLogger()
      const appview = await AppView.create(config, { logger: logs.logger, dns })
      cleanups.push(() => appview.destroy())
      const url = await appview.start()
      const token = (account: TestAccount | null, scopes: string[]) =>
        registryToken(url, host, account, scopes)
      return { appview, url, host, logs, token }
    }

    const stackOf = (view: Awaited<ReturnType<typeof startAppView>>): RegistryStack => ({
      net,
      alice,
      bob,
      hold,
      s3,
      s3Proxy,
      s3Faults,
      ...view,
      dns,
      anotherAppView: async (other = {}) => stackOf(await startAppView(other.mode, other.oauth)),
      nameOf: (account, repository) => `${clientSafeDid(account.did)}/${repository}`,
      request: async (path, init = {}) => {
        const { as, scopes, ...rest } = init
        const headers = new Headers(rest.headers)
        if (scopes !== undefined) {
          headers.set('authorization', `Bearer ${await view.token(as ?? null, scopes)}`)
        }
        return fetch(`${view.url}${path}`, { ...rest, headers, redirect: 'manual' })
      },
      close,
    })
    return stackOf(await startAppView())
  } catch (error) {
    await close()
    throw error
  }
}

/**
 * A registry token from the AppView at `url` (service `host`) for `scopes`, as clients get
 * one: Basic auth with the account's app password (anonymous when `account` is null).
 */
export async function registryToken(
  url: string,
  host: string,
  account: TestAccount | null,
  scopes: string[],
): Promise<string> {
  const query = new URLSearchParams({ service: host })
  for (const scope of scopes) query.append('scope', scope)
  const headers: Record<string, string> = {}
  if (account) {
    const basic = Buffer.from(`${account.did}:${account.appPassword}`).toString('base64')
    headers.authorization = `Basic ${basic}`
  }
  const response = await fetch(`${url}/auth/token?${query}`, { headers })
  const body = (await response.json()) as { token?: string }
  if (!response.ok || !body.token) {
    throw new Error(`/auth/token answered ${response.status}: ${JSON.stringify(body)}`)
  }
  return body.token
}

/** `repository:<name>:<actions>` */
export function repoScope(name: string, actions = 'pull,push'): string {
  return `repository:${name}:${actions}`
}
