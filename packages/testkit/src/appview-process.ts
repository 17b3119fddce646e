import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, LOOPBACK } from './ports.ts'

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
const OUTPUT_LIMIT = 64 * 1024
const START_TIMEOUT_MS = 60_000

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
  const config: Record<string, Record<string, unknown>> = {
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
  for (const [section, values] of Object.entries(options.config ?? {})) {
    config[section] = { ...config[section], ...values }
  }
  const configFile = join(options.dataDir, `appview-${port}.yaml`)
  // YAML is a superset of JSON.
  await writeFile(configFile, JSON.stringify(config, null, 2), { mode: 0o600 })

  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('ATCR_APPVIEW_')),
  )
  const child = spawn(
    process.execPath,
    [options.bin ?? DEFAULT_BIN, 'serve', '--config', configFile],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = once(child, 'exit')

  const kill = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited.catch(() => {})
    clearTimeout(timer)
  }

  try {
    await waitForRegistry(url, child, () => output)
    return {
      url,
      port,
      pid: child.pid ?? 0,
      dataDir: options.dataDir,
      child,
      output: () => output,
      kill,
    }
  } catch (error) {
    await kill('SIGKILL')
    throw error
  }
}

/** Waits until /v2/ answers (401 without a token is an answer). */
async function waitForRegistry(url: string, child: ChildProcess, output: () => string) {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`atcr-appview exited (${child.exitCode ?? child.signalCode}):\n${output()}`)
    }
    try {
      const response = await fetch(`${url}/v2/`)
      await response.body?.cancel()
      return
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`atcr-appview did not answer in ${START_TIMEOUT_MS} ms:\n${output()}`)
}
