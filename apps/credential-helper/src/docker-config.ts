// `configure-docker`: name this helper in the clients' auth files for one registry host
// (`"credHelpers": {"atcr.io": "atcr"}`), keeping everything else in those files, after a
// backup copy. Docker reads ~/.docker/config.json ($DOCKER_CONFIG); podman, skopeo and
// buildah read the containers auth file ($REGISTRY_AUTH_FILE, else
// ~/.config/containers/auth.json, which survives reboots unlike the $XDG_RUNTIME_DIR one).
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'

/** The `NAME` of `docker-credential-NAME`. */
export const HELPER_NAME = 'atcr'

type Env = Record<string, string | undefined>

export interface ConfigureResult {
  file: string
  changed: boolean
  /** Where the previous file was copied to (absent when there was none, or no change). */
  backup?: string
}

export class ClientConfigError extends Error {
  override name = 'ClientConfigError'
}

export function dockerConfigPath(env: Env): string {
  const dir = env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker')
  return join(dir, 'config.json')
}

export function containersAuthPath(env: Env): string {
  if (env.REGISTRY_AUTH_FILE) return env.REGISTRY_AUTH_FILE
  const xdg = env.XDG_CONFIG_HOME
  const base = xdg?.startsWith('/') ? xdg : join(env.HOME || homedir(), '.config')
  return join(base, 'containers', 'auth.json')
}

/** Adds `credHelpers[host] = "atcr"` to one JSON auth file; `indent` as its owner writes it. */
export async function addCredHelper(
  file: string,
  host: string,
  indent: string,
  now: Date = new Date(),
): Promise<ConfigureResult> {
  let text: string | null
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    text = null
  }
  let config: Record<string, unknown> = {}
  if (text !== null && text.trim() !== '') {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (error) {
      throw new ClientConfigError(
        `${file} is not valid JSON (${(error as Error).message}); it was left unchanged`,
      )
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ClientConfigError(`${file} is not a JSON object; it was left unchanged`)
    }
    config = parsed as Record<string, unknown>
  }
  const helpers = config.credHelpers ?? {}
  if (typeof helpers !== 'object' || helpers === null || Array.isArray(helpers)) {
    throw new ClientConfigError(`${file}: credHelpers is not an object; it was left unchanged`)
  }
  if ((helpers as Record<string, unknown>)[host] === HELPER_NAME) return { file, changed: false }
  config.credHelpers = { ...(helpers as Record<string, unknown>), [host]: HELPER_NAME }

  let backup: string | undefined
  let mode = 0o600
  if (text !== null) {
    mode = (await stat(file)).mode & 0o777
    const stamp = now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')
    backup = `${file}.${stamp}.bak`
    await copyFile(file, backup)
  } else {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 })
  }
  const temporary = `${file}.atcr-${process.pid}.tmp`
  try {
    await writeFile(temporary, `${JSON.stringify(config, null, indent)}\n`, { mode, flag: 'wx' })
    await rename(temporary, file)
  } catch (error) {
    await rm(temporary, { force: true })
    throw error
  }
  return { file, changed: true, ...(backup ? { backup } : {}) }
}

export interface ConfigureClientsOptions {
  host: string
  env: Env
  /** Also the containers auth file (default true). */
  containers?: boolean
  /** The containers auth file to edit instead of the default one. */
  authFile?: string
}

export async function configureClients(
  options: ConfigureClientsOptions,
): Promise<ConfigureResult[]> {
  // Both write their files with tabs.
  const results = [await addCredHelper(dockerConfigPath(options.env), options.host, '\t')]
  if (options.containers !== false) {
    const file = options.authFile ?? containersAuthPath(options.env)
    results.push(await addCredHelper(file, options.host, '\t'))
  }
  return results
}
