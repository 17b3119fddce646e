// The one way the hold's tests start a Hold. `TestHold.start` runs a real Hold on loopback
// in dev mode (a temp data dir, a free port, filesystem or S3 storage); `HoldFixture.start`
// is a test file's whole setup (the test network, accounts, a trusted AppView, S3 and the
// holds), closed together. Also the hold's CLI as the tests run it.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createPlcIdentity } from '@atcr/core/identity/plc'
import { silentLogger } from '@atcr/core/log'
import { mintServiceAuthToken } from '@atcr/core/service-auth'
import {
  freePort,
  makeTempDir,
  removeTempDir,
  startDidWebServer,
  startNetwork,
  startS3,
  type TestAccount,
  type TestNetwork,
  type TestS3,
} from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { type HoldConfig, holdConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/index.ts'
import { Hold } from '../src/index.ts'
import { RepoReader } from '../src/pds/reader.ts'
import { type S3GapProxy, startS3GapProxy } from './storage-s3-gaps.ts'

/** Any part of the hold's config, as in its YAML. */
export type Overrides = NonNullable<NonNullable<Parameters<typeof holdConfig.load>[0]>['overrides']>
type QuotaTier = NonNullable<NonNullable<Overrides['quota']>['tiers']>[number]

/** Storage for a test hold: the filesystem in its data dir, or a bucket prefix on S3. */
export type TestStorage =
  | { driver: 'filesystem' }
  | {
      driver: 's3'
      s3: TestS3
      /** Where the hold reaches S3 (s3rver, or a proxy in front of it). */
      endpoint: string
      /** Where clients reach it (presigned URLs); must be a `localhost` name for fetch. */
      publicEndpoint: string
    }

export interface TestHoldOptions {
  plcUrl: string
  ownerDid: string
  /** Default: a new temp dir. Either way `close()` removes it, `stop()` keeps it. */
  dataDir?: string
  port?: number
  /** Default: the filesystem. */
  storage?: TestStorage
  /** Anonymous blob reads (registration.public). */
  public?: boolean
  /** Any signed-in account may join the crew (registration.allow_all_crew). */
  allowAllCrew?: boolean
  tiers?: QuotaTier[]
  defaultTier?: string
  trustedAppViewDid?: string
  /** Any other config; wins over everything above. */
  overrides?: Overrides
}

/** The config a test hold runs with (making its temp data dir unless one is given). */
export async function testHoldConfig(options: TestHoldOptions): Promise<HoldConfig> {
  const port = options.port ?? (await freePort())
  const dataDir = options.dataDir ?? (await makeTempDir('atcr-hold-'))
  const registration = {
    owner_did: options.ownerDid,
    ...(options.public === undefined ? {} : { public: options.public }),
    ...(options.allowAllCrew === undefined ? {} : { allow_all_crew: options.allowAllCrew }),
  }
  const defaults: Overrides = {
    server: {
      host: '127.0.0.1',
      port,
      public_url: `http://localhost:${port}`,
      data_dir: dataDir,
      mode: 'dev',
    },
    identity: { plc_directory_url: options.plcUrl },
    registration,
    storage: storageConfig(options.storage ?? { driver: 'filesystem' }, `hold-${port}`),
    ...(options.tiers === undefined
      ? {}
      : {
          quota: {
            tiers: options.tiers,
            ...(options.defaultTier === undefined ? {} : { default_tier: options.defaultTier }),
          },
        }),
    ...(options.trustedAppViewDid === undefined
      ? {}
      : { auth: { trusted_appview_did: options.trustedAppViewDid } }),
  }
  return holdConfig.load({ env: {}, overrides: deepMerge(defaults, options.overrides ?? {}) })
}

function storageConfig(storage: TestStorage, prefix: string): Overrides['storage'] {
  if (storage.driver === 'filesystem') return { driver: 'filesystem' }
  return {
    driver: 's3',
    s3: {
      endpoint: storage.endpoint,
      public_endpoint: storage.publicEndpoint,
      bucket: storage.s3.bucket,
      region: storage.s3.region,
      force_path_style: true,
      access_key_id: storage.s3.accessKeyId,
      secret_access_key: storage.s3.secretAccessKey,
      prefix,
    },
  }
}

/** A real Hold started for a test. */
export class TestHold {
  hold: Hold
  readonly config: HoldConfig
  readonly url: string
  readonly dataDir: string
  private running = true

  private constructor(hold: Hold, config: HoldConfig) {
    this.hold = hold
    this.config = config
    this.url = config.server.public_url
    this.dataDir = config.server.data_dir
  }

  static async start(options: TestHoldOptions): Promise<TestHold> {
    const config = await testHoldConfig(options)
    try {
      return new TestHold(await startedHold(config), config)
    } catch (error) {
      if (options.dataDir === undefined) await removeTempDir(config.server.data_dir)
      throw error
    }
  }

  get did(): string {
    return this.hold.did
  }

  get ctx() {
    return this.hold.ctx
  }

  /** Destroys the hold and creates it again on the same data dir and port. */
  async restart(): Promise<void> {
    await this.stop()
    this.hold = await startedHold(this.config)
    this.running = true
  }

  /** Destroys the hold; its data dir stays (another hold may start on it). */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    await this.hold.destroy()
  }

  /** Stops the hold and removes its data dir. */
  async close(): Promise<void> {
    await this.stop()
    await removeTempDir(this.dataDir)
  }
}

async function startedHold(config: HoldConfig): Promise<Hold> {
  const hold = await Hold.create(config, { logger: silentLogger() })
  await hold.start()
  return hold
}

/** A trusted AppView: its own DID and key, calling with tokens it signs itself. */
export interface TestAppView {
  did: string
  /** A service token for `aud` and `lxm`, as a caller of the XRPC helpers. */
  token(aud: string, lxm: string, options?: { issuedAt?: number }): Promise<{ token: string }>
  close(): Promise<void>
}

/**
 * Starts an AppView identity: a did:web served on loopback, or (with `plcUrl`) a did:plc
 * registered on the test PLC directory.
 */
export async function startAppView(options: { plcUrl?: string } = {}): Promise<TestAppView> {
  const keypair = await Secp256k1Keypair.create({ exportable: true })
  let did: string
  let close = async () => {}
  if (options.plcUrl) {
    ;({ did } = await createPlcIdentity({
      plcUrl: options.plcUrl,
      mode: 'dev',
      rotationKey: await Secp256k1Keypair.create(),
      signingKey: keypair,
      handle: 'appview.test',
      serviceEndpoint: 'https://appview.test',
    }))
  } else {
    const server = await startDidWebServer()
    did = server.did
    close = () => server.close()
    server.setDocument({
      '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
      id: did,
      verificationMethod: [
        {
          id: `${did}#atproto`,
          type: 'Multikey',
          controller: did,
          publicKeyMultibase: keypair.did().slice('did:key:'.length),
        },
      ],
      service: [{ id: '#atcr_appview', type: 'AtcrAppView', serviceEndpoint: server.url }],
    })
  }
  return {
    did,
    token: async (aud, lxm, { issuedAt } = {}) => ({
      token: await mintServiceAuthToken({
        iss: did,
        aud,
        lxm,
        keypair,
        ...(issuedAt === undefined ? {} : { issuedAt }),
      }),
    }),
    close,
  }
}

export interface HoldFixtureOptions<Handles extends readonly string[]> {
  /** Accounts to create on the test PDS, in this order. */
  accounts?: Handles
  /** Who owns the holds: default the first account; a DID here needs no account. */
  ownerDid?: string
  /** A trusted AppView that every hold of the fixture trusts: did:web, or did:plc. */
  appView?: 'did:web' | 'did:plc'
  /** s3rver behind the storage tests' gap proxy, for holds on S3 (`fixture.s3.storage`). */
  s3?: boolean
}

export type FixtureHoldOptions = Partial<TestHoldOptions>

export interface S3Fixture {
  s3: TestS3
  proxy: S3GapProxy
  /** S3 storage for a hold, reached through the proxy. */
  storage: TestStorage
}

type Accounts<Handles extends readonly string[]> = { -readonly [K in keyof Handles]: TestAccount }

/**
 * A test file's setup: a real network with accounts, optionally a trusted AppView and S3,
 * and the holds it starts. `close()` stops all of it and removes every data dir.
 */
export class HoldFixture<Handles extends readonly string[] = readonly string[]> {
  readonly net: TestNetwork
  accounts = [] as unknown as Accounts<Handles>
  private owner: string | undefined
  private trustedAppView: TestAppView | undefined
  private s3Fixture: S3Fixture | undefined
  private readonly holds: TestHold[] = []
  private readonly dirs: string[] = []

  private constructor(net: TestNetwork) {
    this.net = net
  }

  static async start<const Handles extends readonly string[] = []>(
    options: HoldFixtureOptions<Handles> = {},
  ): Promise<HoldFixture<Handles>> {
    const fixture = new HoldFixture<Handles>(await startNetwork())
    try {
      const handles = options.accounts ?? []
      fixture.accounts = (await Promise.all(
        handles.map((handle) => fixture.net.pds.createAccount(handle)),
      )) as unknown as Accounts<Handles>
      fixture.owner = options.ownerDid ?? (fixture.accounts as TestAccount[])[0]?.did
      if (options.appView) {
        fixture.trustedAppView = await startAppView(
          options.appView === 'did:plc' ? { plcUrl: fixture.net.plc.url } : {},
        )
      }
      if (options.s3) fixture.s3Fixture = await startS3Fixture()
      return fixture
    } catch (error) {
      await fixture.close()
      throw error
    }
  }

  get ownerDid(): string {
    if (!this.owner) throw new Error('the fixture has no owner: give accounts or ownerDid')
    return this.owner
  }

  get appView(): TestAppView {
    if (!this.trustedAppView) throw new Error('the fixture was started without appView')
    return this.trustedAppView
  }

  get s3(): S3Fixture {
    if (!this.s3Fixture) throw new Error('the fixture was started without s3')
    return this.s3Fixture
  }

  /** A hold owned by the fixture's owner, trusting its AppView; closed with the fixture. */
  async startHold(options: FixtureHoldOptions = {}): Promise<TestHold> {
    const hold = await TestHold.start({
      plcUrl: this.net.plc.url,
      ownerDid: this.ownerDid,
      ...(this.trustedAppView ? { trustedAppViewDid: this.trustedAppView.did } : {}),
      ...options,
      dataDir: options.dataDir ?? (await this.tempDir()),
    })
    this.holds.push(hold)
    return hold
  }

  /** A temp dir removed when the fixture closes. */
  async tempDir(): Promise<string> {
    const dir = await makeTempDir('atcr-hold-')
    this.dirs.push(dir)
    return dir
  }

  async close(): Promise<void> {
    // Every hold stops before any data dir goes: holds may share one.
    for (const hold of this.holds) await hold.stop()
    for (const hold of this.holds) await hold.close()
    for (const dir of this.dirs) await removeTempDir(dir)
    await this.trustedAppView?.close()
    await this.s3Fixture?.proxy.close()
    await this.s3Fixture?.s3.close()
    await this.net.close()
  }
}

async function startS3Fixture(): Promise<S3Fixture> {
  const s3 = await startS3()
  try {
    const proxy = await startS3GapProxy(s3.endpoint)
    const { endpoint, publicEndpoint } = proxy
    return { s3, proxy, storage: { driver: 's3', s3, endpoint, publicEndpoint } }
  } catch (error) {
    await s3.close()
    throw error
  }
}

export interface CliResult {
  code: number | null
  /** The signal that ended the process (SIGKILL when `signal` aborted it). */
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

const BIN = new URL('../bin/atcr-hold', import.meta.url).pathname

/** Runs the atcr-hold executable to its end; an aborted `signal` SIGKILLs it. */
export function runHoldCli(
  args: string[],
  env: Record<string, string> = {},
  options: { signal?: AbortSignal } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.signal ? { signal: options.signal, killSignal: 'SIGKILL' as const } : {}),
    })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    child.on('error', (error) => {
      if (error.name !== 'AbortError') reject(error)
    })
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr }),
    )
  })
}

/** The repo head and every record (uri, cid) in a stopped hold's data dir. */
export async function recordsOf(dataDir: string, did: string) {
  const db = await openDatabase(join(dataDir, 'hold.sqlite'))
  try {
    const reader = new RepoReader(db, did)
    const all: { uri: string; cid: string }[] = []
    for (const collection of await reader.listCollections()) {
      const page = await reader.listRecords({ collection, limit: 100 })
      all.push(...page.map(({ uri, cid }) => ({ uri, cid })))
    }
    return { head: await reader.getHead(), records: all.sort((a, b) => a.uri.localeCompare(b.uri)) }
  } finally {
    await db.close()
  }
}

/** The environment for the CLI to open the data dir of a test hold (as it was started). */
export function holdCliEnv(hold: { dataDir: string; url: string; ownerDid: string }) {
  return {
    ATCR_HOLD_SERVER_DATA_DIR: hold.dataDir,
    ATCR_HOLD_SERVER_PUBLIC_URL: hold.url,
    ATCR_HOLD_SERVER_MODE: 'dev',
    ATCR_HOLD_REGISTRATION_OWNER_DID: hold.ownerDid,
  }
}

function deepMerge<T>(base: T, overrides: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(overrides)) return overrides as T
  const merged: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(overrides)) {
    merged[key] = deepMerge((base as Record<string, unknown>)[key], value)
  }
  return merged as T
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
