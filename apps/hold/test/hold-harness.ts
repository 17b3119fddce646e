// Starts real Hold services for tests: a temp data dir, loopback, dev mode, a free port.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '@atcr/core/log'
import { freePort } from '@atcr/testkit'
import { type HoldConfig, holdConfig } from '../src/config.ts'
import { Hold } from '../src/index.ts'

type Overrides = NonNullable<NonNullable<Parameters<typeof holdConfig.load>[0]>['overrides']>

export interface HoldHarnessOptions {
  plcUrl: string
  ownerDid: string
  dataDir?: string
  port?: number
  overrides?: Overrides
}

export interface RunningHold {
  hold: Hold
  config: HoldConfig
  url: string
  dataDir: string
  stop(): Promise<void>
}

export function makeTempDir(prefix = 'atcr-hold-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

export const removeTempDir = (dir: string) => rm(dir, { recursive: true, force: true })

/** The config a test hold runs with; `overrides` win over the test defaults. */
export async function testHoldConfig(options: HoldHarnessOptions): Promise<HoldConfig> {
  const port = options.port ?? (await freePort())
  const dataDir = options.dataDir ?? (await makeTempDir())
  const defaults: Overrides = {
    server: {
      host: '127.0.0.1',
      port,
      public_url: `http://localhost:${port}`,
      data_dir: dataDir,
      mode: 'dev',
    },
    identity: { plc_directory_url: options.plcUrl },
    registration: { owner_did: options.ownerDid },
  }
  return holdConfig.load({ env: {}, overrides: deepMerge(defaults, options.overrides ?? {}) })
}

/** Creates and starts a hold; `stop()` destroys it (the data dir is the caller's). */
export async function startHold(options: HoldHarnessOptions): Promise<RunningHold> {
  const config = await testHoldConfig(options)
  const hold = await Hold.create(config, { logger: silentLogger() })
  await hold.start()
  return {
    hold,
    config,
    url: config.server.public_url,
    dataDir: config.server.data_dir,
    stop: () => hold.destroy(),
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
