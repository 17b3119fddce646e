// The Docker credential-helper protocol (docker/docker-credential-helpers): `get`, `store`,
// `erase`, `list`, `version`. Input on stdin; answers and errors on stdout (clients read
// errors from there, and match "credentials not found in native keychain" exactly); exit
// code 1 on any error. Hints for people go to stderr.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import {
  type Account,
  accountMatches,
  accountUsername,
  activeAccount,
  CredentialsFileError,
  credentialsPath,
  loadCredentials,
  putAccount,
  updateCredentials,
} from './accounts.ts'
import { insecureFromEnv, RegistryNameError, registryHost, registryUrl } from './registry.ts'

export const VERSION = '0.1.0'

export const NOT_FOUND = 'credentials not found in native keychain'
export const MISSING_SERVER_URL = 'no credentials server URL'
export const MISSING_USERNAME = 'no credentials username'

export interface HelperIo {
  env: Record<string, string | undefined>
  /** All of stdin (bounded); rejects when stdin is a terminal, so nothing waits on a person. */
  readStdin(): Promise<string>
  stdout(text: string): void
  stderr(text: string): void
  /** Command lines of the processes that called us, nearest first. */
  callerCommandLines(): string[][]
}

/** The program name users type (`docker-credential-atcr` or `atcr`). */
export interface ProtocolContext {
  io: HelperIo
  program: string
}

class ProtocolError extends Error {}

const MAX_STDIN = 64 * 1024

/** Runs one protocol command; returns the exit code. */
export async function runProtocolCommand(
  command: 'get' | 'store' | 'erase' | 'list' | 'version',
  context: ProtocolContext,
): Promise<number> {
  const { io } = context
  try {
    switch (command) {
      case 'get':
        return await get(context)
      case 'store':
        await store(context)
        return 0
      case 'erase':
        await erase(context)
        return 0
      case 'list':
        await list(context)
        return 0
      case 'version':
        io.stdout(`docker-credential-atcr (ATCR) ${VERSION}\n`)
        return 0
    }
  } catch (error) {
    if (
      error instanceof ProtocolError ||
      error instanceof CredentialsFileError ||
      error instanceof RegistryNameError
    ) {
      io.stdout(`${error.message}\n`)
      return 1
    }
    throw error
  }
}

async function serverFromStdin(io: HelperIo): Promise<string> {
  const input = (await io.readStdin()).trim()
  if (input === '') throw new ProtocolError(MISSING_SERVER_URL)
  if (input.includes('\n')) throw new ProtocolError('expected one server URL on stdin')
  return input
}

async function get({ io, program }: ProtocolContext): Promise<number> {
  const serverUrl = await serverFromStdin(io)
  const host = registryHost(serverUrl)
  const data = await loadCredentials(credentialsPath(io.env))
  const entry = data.registries[host]
  if (!entry || entry.accounts.length === 0) {
    io.stdout(`${NOT_FOUND}\n`)
    io.stderr(`${program}: not logged in to ${host}; run: ${program} login ${host}\n`)
    return 1
  }
  const named = identityFromCallers(host, io.callerCommandLines())
  let account: Account | undefined
  if (named !== undefined) account = entry.accounts.find((a) => accountMatches(a, named))
  account ??= activeAccount(entry) ?? entry.accounts[0]!
  io.stdout(
    `${JSON.stringify({ ServerURL: serverUrl, Username: accountUsername(account), Secret: account.secret })}\n`,
  )
  return 0
}

interface StoreInput {
  ServerURL: string
  Username: string
  Secret: string
}

function parseStoreInput(text: string): StoreInput {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    // JSON.parse's message quotes the input, newlines and all: not echoed on the one line.
    throw new ProtocolError('store expects JSON on stdin: {ServerURL, Username, Secret}')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('store expects a JSON object {ServerURL, Username, Secret}')
  }
  const { ServerURL, Username, Secret } = value as Record<string, unknown>
  if (typeof ServerURL !== 'string' || ServerURL.trim() === '') {
    throw new ProtocolError(MISSING_SERVER_URL)
  }
  if (typeof Username !== 'string' || Username.trim() === '') {
    throw new ProtocolError(MISSING_USERNAME)
  }
  if (typeof Secret !== 'string' || Secret === '') {
    throw new ProtocolError('no credentials secret')
  }
  return { ServerURL, Username: Username.trim(), Secret }
}

async function store({ io }: ProtocolContext): Promise<void> {
  const input = parseStoreInput(await io.readStdin())
  const host = registryHost(input.ServerURL)
  const url = registryUrl(input.ServerURL, insecureFromEnv(io.env))
  const isDid = input.Username.startsWith('did:')
  await updateCredentials(credentialsPath(io.env), (data) => {
    const existing = data.registries[host]?.accounts.find((a) => accountMatches(a, input.Username))
    const account: Account = {
      ...(isDid ? { did: input.Username } : { handle: input.Username.toLowerCase() }),
      // A handle stored by a device login keeps its DID (and the other way round).
      ...(existing?.did && !isDid ? { did: existing.did } : {}),
      ...(existing?.handle && isDid ? { handle: existing.handle } : {}),
      secret: input.Secret,
      source: 'store',
      addedAt: new Date().toISOString(),
    }
    putAccount(data, host, data.registries[host]?.url ?? url, account)
  })
}

async function erase({ io }: ProtocolContext): Promise<void> {
  const host = registryHost(await serverFromStdin(io))
  await updateCredentials(credentialsPath(io.env), (data) => {
    const entry = data.registries[host]
    if (!entry || entry.accounts.length === 0) throw new ProtocolError(NOT_FOUND)
    delete data.registries[host]
    if (data.defaultRegistry === host) {
      const next = Object.keys(data.registries)[0]
      if (next === undefined) delete data.defaultRegistry
      else data.defaultRegistry = next
    }
  })
}

async function list({ io }: ProtocolContext): Promise<void> {
  const data = await loadCredentials(credentialsPath(io.env))
  // Without a prototype, so that a host named __proto__ is listed like any other.
  const out: Record<string, string> = Object.create(null)
  for (const [host, entry] of Object.entries(data.registries)) {
    const account = activeAccount(entry) ?? entry.accounts[0]
    if (account) out[host] = accountUsername(account)
  }
  io.stdout(`${JSON.stringify(out)}\n`)
}

/**
 * The identity named by an image reference on a caller's command line: the component after
 * `<host>/` in `docker push host/alice.example.com/app:1`, `docker://host/did-plc-xyz/app`.
 */
export function identityFromCallers(host: string, commandLines: string[][]): string | undefined {
  const prefix = `${host.toLowerCase()}/`
  for (const args of commandLines) {
    for (const arg of args) {
      const lower = arg.toLowerCase()
      const at = lower.indexOf(prefix)
      if (at < 0) continue
      // The host must start the reference (or follow a transport like docker://).
      if (at > 0 && !/(^|[=:/])$/.test(lower.slice(0, at))) continue
      const identity = arg.slice(at + prefix.length).split(/[/:@]/)[0]
      if (identity && /^(did:|did-|[a-z0-9])/i.test(identity)) {
        // `did:plc:x` splits at its own colons: take the whole raw DID.
        const raw = /^did:(plc|web):[a-zA-Z0-9._%-]+/.exec(arg.slice(at + prefix.length))
        return raw ? raw[0] : identity
      }
    }
  }
  return undefined
}

const MAX_ANCESTORS = 3

/**
 * Command lines of the parent process and a couple of its ancestors (a `make` or shell
 * script may sit between the user's command and docker). Linux reads /proc; elsewhere `ps`.
 */
export function callerCommandLines(): string[][] {
  const lines: string[][] = []
  let pid = process.ppid
  for (let depth = 0; depth < MAX_ANCESTORS && pid > 1; depth++) {
    const found = readProcess(pid)
    if (!found) break
    lines.push(found.args)
    pid = found.ppid
  }
  return lines
}

function readProcess(pid: number): { args: string[]; ppid: number } | null {
  if (process.platform === 'linux') {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean)
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // Fields after the command name (which may contain spaces) end with `)`.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      return { args, ppid: Number.isInteger(ppid) ? ppid : 0 }
    } catch {
      return null
    }
  }
  try {
    const out = execFileSync('ps', ['-o', 'ppid=,args=', '-p', String(pid)], {
      encoding: 'utf8',
      timeout: 2000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
    const match = /^(\d+)\s+(.*)$/s.exec(out)
    if (!match) return null
    return { args: match[2]!.split(/\s+/), ppid: Number(match[1]) }
  } catch {
    return null
  }
}

/** Reads stdin to its end, bounded; refuses a terminal (a person would have to type). */
export function readProcessStdin(): Promise<string> {
  if (process.stdin.isTTY) {
    return Promise.reject(
      new ProtocolError('this command reads its input on stdin (not a terminal)'),
    )
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    process.stdin.on('data', (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > MAX_STDIN) {
        process.stdin.destroy()
        reject(new ProtocolError(`stdin is larger than ${MAX_STDIN} bytes`))
        return
      }
      chunks.push(chunk)
    })
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    process.stdin.on('error', reject)
  })
}
