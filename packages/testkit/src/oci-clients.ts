import { execFile, spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

export interface RunOptions {
  env?: Record<string, string>
  /** The working directory (default this process's). */
  cwd?: string
  timeoutMs?: number
  /** Throw unless the command exits 0 (default true). */
  check?: boolean
}

/** Whether an executable is on PATH. */
export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

/** Runs a command to its end; with `check` (the default) a non-zero exit throws with its output. */
export function run(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        env: { ...process.env, ...options.env },
        ...(options.cwd ? { cwd: options.cwd } : {}),
        timeout: options.timeoutMs ?? 180_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code =
          error === null ? 0 : typeof error.code === 'number' ? error.code : error.signal ? 128 : 1
        const result = { code, stdout, stderr }
        if (code !== 0 && options.check !== false) {
          reject(
            new Error(`${command} ${args.join(' ')} exited ${code}:\n${stderr}\n${stdout}`, {
              cause: error,
            }),
          )
          return
        }
        resolve(result)
      },
    )
  })
}

/** Docker-style credentials for a registry host, in an auth file skopeo, podman and buildah read. */
export async function writeAuthFile(
  path: string,
  host: string,
  username: string,
  password: string,
): Promise<string> {
  const auth = Buffer.from(`${username}:${password}`).toString('base64')
  await writeFile(path, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 })
  return path
}

/**
 * Private container storage for podman and buildah: the vfs driver (no kernel overlay
 * needed) with root, runroot and runtime dir in a temporary folder, so tests share
 * nothing with the machine's images or with each other.
 */
export interface ContainerStorage {
  dir: string
  /** Global flags: `--storage-driver vfs --root ... --runroot ...`. */
  args: string[]
  env: Record<string, string>
  podman(args: string[], options?: RunOptions): Promise<CommandResult>
  buildah(args: string[], options?: RunOptions): Promise<CommandResult>
  close(): Promise<void>
}

export async function createContainerStorage(): Promise<ContainerStorage> {
  const dir = await mkdtemp(join(tmpdir(), 'atcr-containers-'))
  const runtime = join(dir, 'runtime')
  await mkdir(runtime, { mode: 0o700 })
  const args = [
    '--storage-driver',
    'vfs',
    '--root',
    join(dir, 'root'),
    '--runroot',
    join(dir, 'runroot'),
  ]
  const env = { XDG_RUNTIME_DIR: runtime }
  const withEnv = (options: RunOptions = {}) => ({ ...options, env: { ...env, ...options.env } })
  return {
    dir,
    args,
    env,
    podman: (more, options) => run('podman', [...args, ...more], withEnv(options)),
    buildah: (more, options) => run('buildah', [...args, ...more], withEnv(options)),
    close: async () => {
      await run('buildah', [...args, 'rm', '--all'], { env, check: false })
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The docker CLI (client only) with its own config directory. */
export async function createDockerCli(): Promise<{
  configDir: string
  docker(args: string[], options?: RunOptions): Promise<CommandResult>
  close(): Promise<void>
}> {
  const configDir = await mkdtemp(join(tmpdir(), 'atcr-docker-'))
  return {
    configDir,
    docker: (args, options = {}) =>
      run('docker', args, { ...options, env: { DOCKER_CONFIG: configDir, ...options.env } }),
    close: () => rm(configDir, { recursive: true, force: true }),
  }
}
