// The two registries under test, behind one interface: CNCF Distribution (one process, no
// auth) and the ATCR stack (PLC + PDS, optionally s3rver, the hold and the AppView, each a
// process of its own, dev mode, loopback).
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { startAppViewProcess, startHoldProcess, type TestS3 } from '@atcr/testkit'
import { startDistribution } from '../lib/distribution.ts'
import type { InstalledBins } from '../lib/installed.ts'
import { stopChild } from '../lib/processes.ts'
import type { NetworkInfo, S3Info } from './services-child.ts'

export interface WatchedProcess {
  name: string
  pid: number
}

export type AuthMode = 'push' | 'pull' | 'anonymous'

export interface Target {
  key: 'atcr' | 'distribution'
  label: string
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `127.0.0.1:PORT`, as image references name it. */
  host: string
  /** The full repository name of a short one (ATCR: under the account's DID). */
  repo(short: string): string
  /** The Authorization header for a repository, or null when none is needed. */
  authorization(repo: string, mode: AuthMode): Promise<string | null>
  /** `user:password` for skopeo's --src-creds / --dest-creds, or null. */
  creds: string | null
  processes: WatchedProcess[]
  /** Warnings and errors the servers logged so far (counted, first few kept). */
  problems(): { count: number; samples: string[] }
  close(): Promise<void>
}

const SERVICES_CHILD = new URL('./services-child.ts', import.meta.url).pathname
const TOKEN_LIFETIME_SECONDS = 3600

/** Counts warn/error lines of pino JSON logs (and any line that is not JSON). */
function problemCounter() {
  let count = 0
  const samples: string[] = []
  const seen = new Set<string>()
  const feed = (source: string) => (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (!line.trim()) continue
      let message = line
      try {
        const entry = JSON.parse(line) as {
          level?: number
          msg?: string
          err?: { message?: string }
        }
        if ((entry.level ?? 0) < 40) continue
        message = `${entry.msg ?? ''}${entry.err?.message ? `: ${entry.err.message}` : ''}`
      } catch {
        // Not JSON: a crash trace or a warning from node itself.
      }
      count++
      const key = `${source}: ${message.slice(0, 200)}`
      if (!seen.has(key) && samples.length < 20) {
        seen.add(key)
        samples.push(key)
      }
    }
  }
  return { feed, problems: () => ({ count, samples: [...samples] }) }
}

export async function distributionTarget(work: string): Promise<Target> {
  const registry = await startDistribution(work)
  return {
    key: 'distribution',
    label: 'Distribution',
    url: registry.url,
    host: registry.host,
    repo: (short) => `bench/${short}`,
    authorization: async () => null,
    creds: null,
    processes: [{ name: 'registry', pid: registry.pid }],
    problems: () => ({ count: 0, samples: [] }),
    close: registry.close,
  }
}

/** Runs services-child.ts and reads the JSON line it prints once ready. */
async function startServices<T>(
  kind: 'network' | 's3',
): Promise<{ child: ChildProcess; info: T; output: () => string }> {
  const child = spawn(process.execPath, [SERVICES_CHILD, kind], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let output = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-16_384)
  })
  const info = await new Promise<T>((resolve, reject) => {
    let line = ''
    const timer = setTimeout(() => reject(new Error(`${kind} did not start:\n${output}`)), 120_000)
    const onData = (chunk: Buffer) => {
      line += chunk.toString()
      const end = line.indexOf('\n')
      if (end < 0) return
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      try {
        resolve(JSON.parse(line.slice(0, end)) as T)
      } catch (error) {
        reject(error)
      }
    }
    child.stdout?.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${kind} exited (${code}):\n${output}`))
    })
  })
  child.stdout?.resume()
  return { child, info, output: () => output }
}

export async function atcrTarget(
  work: string,
  storage: 'filesystem' | 's3',
  options: { index?: boolean; bins?: InstalledBins | null } = {},
): Promise<Target> {
  const closers: (() => Promise<void>)[] = []
  const close = async () => {
    for (const closer of closers.reverse()) await closer().catch(() => {})
  }
  try {
    const network = await startServices<NetworkInfo>('network')
    closers.push(() => stopChild(network.child))
    const processes: WatchedProcess[] = [{ name: 'plc+pds', pid: network.child.pid! }]
    let s3: TestS3 | null = null
    if (storage === 's3') {
      const service = await startServices<S3Info>('s3')
      closers.push(() => stopChild(service.child))
      processes.push({ name: 's3rver', pid: service.child.pid! })
      s3 = { ...service.info, close: async () => {} }
    }
    const counter = problemCounter()
    const hold = await startHoldProcess({
      plcUrl: network.info.plcUrl,
      ownerDid: network.info.did,
      storage: s3 ? { s3 } : 'filesystem',
      logLevel: 'warn',
      ...(options.bins ? { bin: options.bins.hold } : {}),
    })
    closers.push(hold.close)
    hold.child.stdout?.on('data', counter.feed('hold'))
    hold.child.stderr?.on('data', counter.feed('hold'))
    const dataDir = join(work, `appview-${storage}`)
    await mkdir(dataDir, { recursive: true })
    const appview = await startAppViewProcess({
      dataDir,
      plcUrl: network.info.plcUrl,
      handleResolverUrl: network.info.pdsUrl,
      logLevel: 'warn',
      ...(options.bins ? { bin: options.bins.appview } : {}),
      config: {
        registry: { default_hold_did: hold.did, token_expiration: TOKEN_LIFETIME_SECONDS },
        // The account is backfilled on its first push; from then on the index answers.
        ...(options.index
          ? {
              ingest: {
                enabled: true,
                sources: [{ type: 'firehose', url: network.info.pdsUrl }],
              },
            }
          : {}),
      },
    })
    closers.push(() => appview.kill())
    appview.child.stdout?.on('data', counter.feed('appview'))
    appview.child.stderr?.on('data', counter.feed('appview'))
    processes.unshift({ name: 'appview', pid: appview.pid }, { name: 'hold', pid: hold.child.pid! })

    const { did, appPassword } = network.info
    const host = new URL(appview.url).host
    const basic = `Basic ${Buffer.from(`${did}:${appPassword}`).toString('base64')}`
    return {
      key: 'atcr',
      label: 'ATCR',
      url: appview.url,
      host,
      repo: (short) => `${did.replaceAll(':', '-')}/${short}`,
      authorization: async (repo, mode) => {
        const actions = mode === 'push' ? 'pull,push' : 'pull'
        const query = new URLSearchParams({ service: host, scope: `repository:${repo}:${actions}` })
        const response = await fetch(`${appview.url}/auth/token?${query}`, {
          headers: mode === 'anonymous' ? {} : { authorization: basic },
          signal: AbortSignal.timeout(60_000),
        })
        const body = (await response.json().catch(() => ({}))) as { token?: string }
        if (!response.ok || !body.token) {
          throw new Error(`/auth/token (${mode}) answered ${response.status}`)
        }
        return `Bearer ${body.token}`
      },
      creds: `${did}:${appPassword}`,
      processes,
      problems: counter.problems,
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}
