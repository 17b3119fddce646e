// Runs the real executables (bin/docker-credential-atcr, bin/atcr) in child processes with
// a private HOME, so tests see exactly what Docker, podman or a person would.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const BIN_DIR = fileURLToPath(new URL('../bin/', import.meta.url))
export const HELPER_BIN = join(BIN_DIR, 'docker-credential-atcr')
export const ATCR_BIN = join(BIN_DIR, 'atcr')

export interface Result {
  code: number
  stdout: string
  stderr: string
}

export interface Home {
  dir: string
  /** HOME and the XDG config dir inside it; nothing of the machine's own config. */
  env: Record<string, string>
  credentials: string
  helper(args: string[], stdin?: string, env?: Record<string, string>): Promise<Result>
  atcr(args: string[], stdin?: string, env?: Record<string, string>): Promise<Result>
  close(): Promise<void>
}

/** Runs `command` with stdin written and closed; resolves with its exit code and output. */
export function runWith(
  command: string,
  args: string[],
  options: { stdin?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? (process.env as Record<string, string>),
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8')
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8')
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })
    })
    child.stdin.end(options.stdin ?? '')
  })
}

/** Environment without the caller's ATCR, Docker and containers settings. */
export function cleanEnv(home: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue
    if (
      /^(ATCR_|DOCKER_|REGISTRY_AUTH_FILE$|XDG_CONFIG_HOME$|DISPLAY$|WAYLAND_DISPLAY$|BROWSER$)/.test(
        key,
      )
    ) {
      continue
    }
    env[key] = value
  }
  env.HOME = home
  env.XDG_CONFIG_HOME = join(home, '.config')
  return env
}

export async function makeHome(): Promise<Home> {
  const dir = await mkdtemp(join(tmpdir(), 'atcr-helper-home-'))
  const env = cleanEnv(dir)
  const call =
    (bin: string) =>
    (args: string[], stdin?: string, more: Record<string, string> = {}) =>
      runWith(process.execPath, [bin, ...args], {
        env: { ...env, ...more },
        ...(stdin === undefined ? {} : { stdin }),
      })
  return {
    dir,
    env,
    credentials: join(dir, '.config', 'atcr', 'credentials.json'),
    helper: call(HELPER_BIN),
    atcr: call(ATCR_BIN),
    close: () => rm(dir, { recursive: true, force: true }),
  }
}
