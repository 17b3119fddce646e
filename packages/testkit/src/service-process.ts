import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { delimiter, dirname } from 'node:path'

const OUTPUT_LIMIT = 64 * 1024
const START_TIMEOUT_MS = 60_000

/** Config sections: what a service's YAML file holds. */
export type ServiceConfig = Record<string, Record<string, unknown>>

export interface ServiceProcess {
  child: ChildProcess
  /** What the service has printed so far (bounded). */
  output(): string
  /** Sends a signal (SIGKILL after 10 s) and waits for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>
}

/** `config` with each section of `extra` merged over its own. */
export function mergeConfig(config: ServiceConfig, extra: ServiceConfig = {}): ServiceConfig {
  const merged = { ...config }
  for (const [section, values] of Object.entries(extra)) {
    merged[section] = { ...merged[section], ...values }
  }
  return merged
}

/**
 * One of the project's services (`<bin> serve --config FILE`) in a child process, run with
 * the running node (first on PATH, so the bin's shebang and its V8 flags apply): `config` is written to `configFile` (0600), and the environment loses
 * the service's own `<envPrefix>_*` overrides so the test's config is what it runs with.
 */
export async function spawnService(options: {
  bin: string
  configFile: string
  config: ServiceConfig
  envPrefix: string
  /** Added to the environment (after the `<envPrefix>_*` overrides are dropped). */
  env?: Record<string, string>
}): Promise<ServiceProcess> {
  // YAML is a superset of JSON.
  await writeFile(options.configFile, JSON.stringify(options.config, null, 2), { mode: 0o600 })
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith(`${options.envPrefix}_`)),
  )
  env.PATH = `${dirname(process.execPath)}${delimiter}${env.PATH ?? ''}`
  Object.assign(env, options.env)
  const child = spawn(options.bin, ['serve', '--config', options.configFile], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = once(child, 'exit')
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited.catch(() => {})
    clearTimeout(timer)
  }
  return { child, output: () => output, stop }
}

/**
 * Waits until `url` answers (with `ok` when `requireOk`), failing early with the service's
 * output if it exits first.
 */
export async function waitForAnswer(
  service: ServiceProcess,
  what: string,
  url: string,
  options: { requireOk?: boolean } = {},
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  const { child } = service
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${what} exited (${child.exitCode ?? child.signalCode}):\n${service.output()}`,
      )
    }
    try {
      const response = await fetch(url)
      await response.body?.cancel()
      if (response.ok || !options.requireOk) return
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${what} did not answer in ${START_TIMEOUT_MS} ms:\n${service.output()}`)
}
