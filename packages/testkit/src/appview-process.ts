import type { ChildProcess } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, LOOPBACK } from './ports.ts'
import { mergeConfig, type ServiceConfig, spawnService, waitForAnswer } from './service-process.ts'

export interface StartAppViewProcessOptions {
  /** The data dir (created if missing, never removed here: processes may share it). */
  dataDir: string
  /** The PLC directory (`http://localhost:PORT`). */
  plcUrl: string
  /** Where handles are resolved (a PDS), since a child process has no test DNS. */
  handleResolverUrl?: string
  /** The port to listen on (default: a free one; pass the old one to restart in place). */
  port?: number
  /** server.base_url (default `http://127.0.0.1:PORT`); instances behind one name share it. */
  baseUrl?: string
  /** Config sections merged over the generated ones. */
  config?: Record<string, Record<string, unknown>>
  /** The AppView's log level (default warn; its output is kept). */
  logLevel?: string
  /** Environment variables added for the process (e.g. `ATCR_APPVIEW_*` overrides, as a deployment sets them). */
  env?: Record<string, string>
  /** Another `atcr-appview` executable; default the workspace's apps/appview/bin/atcr-appview. */
  bin?: string
}

export interface AppViewProcess {
  /** `http://127.0.0.1:PORT`, where this process listens. */
  url: string
  port: number
  pid: number
  dataDir: string
  child: ChildProcess
  /** What the AppView has printed so far (bounded). */
  output(): string
  /** Kills it with a signal (SIGKILL: no shutdown at all) and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>
}

const DEFAULT_BIN = fileURLToPath(
  new URL('../../../apps/appview/bin/atcr-appview', import.meta.url),
)

/**
 * A real AppView (the `atcr-appview serve` executable) in a child process on loopback, in
 * dev mode: for what only a separate process shows (its memory, a restart, several
 * instances on one database). Its config file is written into `dataDir`.
 */
export async function startAppViewProcess(
  options: StartAppViewProcessOptions,
): Promise<AppViewProcess> {
  const port = options.port ?? (await freePort())
  const url = `http://${LOOPBACK}:${port}`
  await mkdir(options.dataDir, { recursive: true })
  const config: ServiceConfig = {
    server: {
      base_url: options.baseUrl ?? url,
      host: LOOPBACK,
      port,
      data_dir: options.dataDir,
      mode: 'dev',
    },
    identity: {
      plc_directory_url: options.plcUrl,
      ...(options.handleResolverUrl ? { handle_resolver_url: options.handleResolverUrl } : {}),
    },
    log: { level: options.logLevel ?? 'warn' },
  }
  const service = await spawnService({
    bin: options.bin ?? DEFAULT_BIN,
    configFile: join(options.dataDir, `appview-${port}.yaml`),
    config: mergeConfig(config, options.config),
    envPrefix: 'ATCR_APPVIEW',
    env: options.env,
  })
  try {
    // /v2/ answers 401 without a token: any answer means it is up.
    await waitForAnswer(service, 'atcr-appview', `${url}/v2/`)
    return {
      url,
      port,
      pid: service.child.pid ?? 0,
      dataDir: options.dataDir,
      child: service.child,
      output: service.output,
      kill: service.stop,
    }
  } catch (error) {
    await service.stop('SIGKILL')
    throw error
  }
}
