// The credentials file: every registry the user signed in to, its accounts (DID, handle,
// device secret) and the active one. One JSON file, mode 0600, under the XDG config dir.
// It is read on every `get`, so this module uses nothing but node built-ins.
import { randomBytes } from 'node:crypto'
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'

export interface Account {
  /** Known after a device login; absent when `store` was handed a handle. */
  did?: string
  handle?: string
  /** The device secret (or whatever password `store` was given). */
  secret: string
  /** How the secret got here: the device flow, or a client's `store` (docker/podman login). */
  source: 'device' | 'store'
  addedAt: string
}

export interface RegistryEntry {
  /** `https://host` (or `http://` for loopback and insecure registries). */
  url: string
  /** The account `get` answers with when the caller's command line names none. */
  active: string | null
  accounts: Account[]
}

export interface CredentialsData {
  version: 1
  /** The registry user commands act on when none is named. */
  defaultRegistry?: string
  /** By registry host (`atcr.io`, `127.0.0.1:5000`). */
  registries: Record<string, RegistryEntry>
}

export type CredentialsFileProblem = 'corrupted' | 'permissions' | 'unreadable' | 'locked'

/** The credentials file cannot be used; the message says what is wrong and how to fix it. */
export class CredentialsFileError extends Error {
  readonly problem: CredentialsFileProblem
  readonly path: string
  constructor(problem: CredentialsFileProblem, path: string, message: string) {
    super(message)
    this.name = 'CredentialsFileError'
    this.problem = problem
    this.path = path
  }
}

type Env = Record<string, string | undefined>

/** `$XDG_CONFIG_HOME/atcr/credentials.json`, or `~/.config/atcr/credentials.json`. */
export function credentialsPath(env: Env = process.env): string {
  const xdg = env.XDG_CONFIG_HOME
  const base = xdg?.startsWith('/') ? xdg : join(env.HOME || homedir(), '.config')
  return join(base, 'atcr', 'credentials.json')
}

/**
 * Registries by host, without a prototype: a host such as `__proto__` or `constructor` (which
 * a URL allows) is then an ordinary key, never Object.prototype's.
 */
function hostMap(): Record<string, RegistryEntry> {
  return Object.create(null) as Record<string, RegistryEntry>
}

export function emptyCredentials(): CredentialsData {
  return { version: 1, registries: hostMap() }
}

/** The key an account goes by: its DID when known, else its handle. */
export function accountId(account: Pick<Account, 'did' | 'handle'>): string {
  return account.did ?? account.handle ?? ''
}

/** What the account presents as its registry username: the DID (stable), else the handle. */
export function accountUsername(account: Account): string {
  return account.did ?? account.handle ?? ''
}

/** How the account is shown to people: `alice.bsky.social (did:plc:...)`. */
export function describeAccount(account: Account): string {
  if (account.handle && account.did) return `${account.handle} (${account.did})`
  return accountId(account)
}

/** Whether `name` (a handle, a DID, or a DID spelled with `-` as in image names) is `account`. */
export function accountMatches(account: Account, name: string): boolean {
  const wanted = name.toLowerCase()
  if (account.handle && account.handle.toLowerCase() === wanted) return true
  if (!account.did) return false
  return account.did === name || account.did.replaceAll(':', '-') === wanted
}

/**
 * Reads the file; a missing file is an empty one. Refuses a file others can read or that
 * another user owns (it holds secrets), and a file that is not what this program writes:
 * both with a message naming the file and the fix, never by starting over.
 */
export async function loadCredentials(path: string): Promise<CredentialsData> {
  let text: string
  try {
    const handle = await open(path, 'r')
    try {
      const info = await handle.stat()
      if ((info.mode & 0o077) !== 0) {
        const mode = (info.mode & 0o777).toString(8).padStart(4, '0')
        throw new CredentialsFileError(
          'permissions',
          path,
          `credentials file ${path} is accessible by other users (mode ${mode}); ` +
            `it holds secrets: run \`chmod 600 ${path}\``,
        )
      }
      const uid = process.getuid?.()
      if (uid !== undefined && info.uid !== uid) {
        throw new CredentialsFileError(
          'permissions',
          path,
          `credentials file ${path} belongs to another user (uid ${info.uid})`,
        )
      }
      text = await handle.readFile('utf8')
    } finally {
      await handle.close()
    }
  } catch (error) {
    if (error instanceof CredentialsFileError) throw error
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return emptyCredentials()
    throw new CredentialsFileError(
      'unreadable',
      path,
      `cannot read credentials file ${path}: ${(error as Error).message}`,
    )
  }
  return parseCredentials(path, text)
}

function corrupted(path: string, what: string): CredentialsFileError {
  return new CredentialsFileError(
    'corrupted',
    path,
    `credentials file ${path} is corrupted (${what}); it was left as it is: ` +
      'fix it, or move it away and log in again',
  )
}

function parseCredentials(path: string, text: string): CredentialsData {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw corrupted(path, `not JSON: ${(error as Error).message}`)
  }
  if (!isObject(value) || value.version !== 1 || !isObject(value.registries)) {
    throw corrupted(path, 'expected {"version": 1, "registries": {...}}')
  }
  if (value.defaultRegistry !== undefined && typeof value.defaultRegistry !== 'string') {
    throw corrupted(path, 'defaultRegistry is not a string')
  }
  const registries = hostMap()
  for (const [host, entry] of Object.entries(value.registries)) {
    if (
      !isObject(entry) ||
      typeof entry.url !== 'string' ||
      !(entry.active === null || typeof entry.active === 'string') ||
      !Array.isArray(entry.accounts)
    ) {
      throw corrupted(path, `registry ${host} is not {url, active, accounts}`)
    }
    const accounts = entry.accounts.map((account, index) => {
      if (
        !isObject(account) ||
        typeof account.secret !== 'string' ||
        !(account.did === undefined || typeof account.did === 'string') ||
        !(account.handle === undefined || typeof account.handle === 'string') ||
        (account.did === undefined && account.handle === undefined) ||
        (account.source !== 'device' && account.source !== 'store') ||
        typeof account.addedAt !== 'string'
      ) {
        throw corrupted(path, `account ${index} of ${host} is malformed`)
      }
      return account as unknown as Account
    })
    registries[host] = { url: entry.url, active: entry.active, accounts }
  }
  return {
    version: 1,
    ...(value.defaultRegistry === undefined ? {} : { defaultRegistry: value.defaultRegistry }),
    registries,
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Writes the whole file atomically (temporary file, then rename), mode 0600, dir 0700. */
export async function saveCredentials(path: string, data: CredentialsData): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    const handle = await open(temporary, 'wx', 0o600)
    try {
      await handle.writeFile(`${JSON.stringify(data, null, 2)}\n`)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(temporary, path)
  } catch (error) {
    await rm(temporary, { force: true })
    throw error
  }
}

const LOCK_WAIT_MS = 5000
const LOCK_STALE_MS = 30_000

/**
 * Read, change and write the file under a lock file, so two logins (or a `store` during
 * a login) do not lose each other's accounts. A corrupted file fails before any write.
 */
export async function updateCredentials<T>(
  path: string,
  change: (data: CredentialsData) => T | Promise<T>,
): Promise<T> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const lock = `${path}.lock`
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx', mode: 0o600 })
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      const age = await stat(lock).then(
        (info) => Date.now() - info.mtimeMs,
        () => 0,
      )
      // A lock left by a killed process: nobody holds a lock this long.
      if (age > LOCK_STALE_MS) {
        await rm(lock, { force: true })
        continue
      }
      if (Date.now() > deadline) {
        throw new CredentialsFileError(
          'locked',
          path,
          `credentials file ${path} is locked by another atcr process (${lock})`,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
  try {
    const data = await loadCredentials(path)
    const result = await change(data)
    await saveCredentials(path, data)
    return result
  } finally {
    await rm(lock, { force: true })
  }
}

/** Adds or replaces an account of `host` (same DID or same handle) and makes it active. */
export function putAccount(
  data: CredentialsData,
  host: string,
  url: string,
  account: Account,
): void {
  const entry = data.registries[host] ?? { url, active: null, accounts: [] }
  entry.url = url
  const same = (other: Account) =>
    (account.did !== undefined && other.did === account.did) ||
    (account.handle !== undefined && other.handle?.toLowerCase() === account.handle.toLowerCase())
  entry.accounts = [...entry.accounts.filter((other) => !same(other)), account]
  entry.active = accountId(account)
  data.registries[host] = entry
  data.defaultRegistry ??= host
}

/** The active account of a registry entry (or its only one). */
export function activeAccount(entry: RegistryEntry): Account | undefined {
  return (
    entry.accounts.find((account) => accountId(account) === entry.active) ??
    (entry.accounts.length === 1 ? entry.accounts[0] : undefined)
  )
}
