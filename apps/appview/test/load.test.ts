// Load (issue 16), opt-in with ATCR_LOAD_TEST=1 (.ci/run runs it): two AppViews on one
// PostgreSQL behind a real HAProxy, one hold, a real PLC and PDS with five accounts, and
// 50 concurrent clients over HTTP for ATCR_LOAD_SECONDS (default 90). The clients push
// images (distinct layers, layers many of them push at once, monolithic and chunked
// uploads, 6 MiB layers sent to the hold in parts), pull each other's images signed in,
// list tags, cancel uploads and abandon others. Then PostgreSQL is crashed and restarted
// while 20 clients go on, retrying as docker does.
//
// What must hold: no unexpected answer under load (and during the outage no 500, only
// 503s); every image any client was told was pushed pulls back byte for byte; once the
// abandoned uploads expire, no upload session is open on either service and no spill or
// temp file is left; file descriptors are back to their baseline; and memory stops growing
// (each process's peak in the second half of the run within 25% + 32 MiB of the first half's, and
// at most twice its size after warm-up at the end).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  freePort,
  type HoldProcess,
  hasHaproxy,
  hasPostgres,
  makeTempDir,
  removeTempDir,
  startAppViewProcess,
  startHaproxy,
  startHoldProcess,
  startNetwork,
  startPostgres,
  type TestAccount,
  type TestHaproxy,
  type TestNetwork,
  type TestPostgres,
} from '@atcr/testkit'
import { clientSafeDid } from '../src/names.ts'

const enabled = process.env.ATCR_LOAD_TEST === '1'
const SECONDS = Number(process.env.ATCR_LOAD_SECONDS ?? 90)
const CLIENTS = Number(process.env.ATCR_LOAD_CLIENTS ?? 50)
const OUTAGE_CLIENTS = 20
const ACCOUNTS = 5
const KiB = 1024
const MiB = 1024 * KiB
const PART = 5 * MiB
/** Short expiries, so that abandoned uploads are swept within the test. */
const APPVIEW_IDLE_SECONDS = 15
const HOLD_EXPIRY_SECONDS = 20

const missing = [...(hasPostgres() ? [] : ['postgresql']), ...(hasHaproxy() ? [] : ['haproxy'])]
const skip = !enabled
  ? 'set ATCR_LOAD_TEST=1 to run the load test (.ci/run does)'
  : missing.length > 0
    ? `missing ${missing.join(', ')}`
    : false

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface PushedImage {
  name: string
  tag: string
  digest: string
  blobs: Map<string, number>
}

/** What the clients saw: answers counted, latencies per operation, unexpected answers kept. */
class Tally {
  readonly counts = new Map<string, number>()
  readonly unexpected: string[] = []
  readonly latencies = new Map<string, number[]>()

  count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1)
  }

  took(op: string, ms: number): void {
    const list = this.latencies.get(op) ?? []
    list.push(ms)
    this.latencies.set(op, list)
  }

  report(): string {
    const requests = [...this.latencies.values()].reduce((n, l) => n + l.length, 0)
    const ops = [...this.latencies].map(([op, list]) => {
      const sorted = [...list].sort((a, b) => a - b)
      const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
      return `${op} ${list.length}× p50 ${at(0.5).toFixed(0)} p99 ${at(0.99).toFixed(0)} ms`
    })
    const statuses = [...this.counts].map(([k, v]) => `${k}: ${v}`)
    return `${requests} requests; ${ops.join(', ')}; answers ${statuses.join(', ')}`
  }
}

/** An answer the client cannot go on from; `retryable` as docker would retry it. */
class Refused extends Error {
  readonly status: number

  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }

  get retryable(): boolean {
    return this.status === 502 || this.status === 503 || this.status === 0
  }
}

/** Registry calls as an OCI client makes them, through the balancer. */
class Client {
  readonly base: string
  readonly service: string
  readonly account: TestAccount
  readonly tally: Tally
  /** Tokens by account, repository and actions, shared by all clients. */
  readonly #tokens: Map<string, Promise<string>>

  constructor(
    base: string,
    service: string,
    account: TestAccount,
    tally: Tally,
    tokens: Map<string, Promise<string>>,
  ) {
    this.base = base
    this.service = service
    this.account = account
    this.tally = tally
    this.#tokens = tokens
  }

  token(name: string, actions: string): Promise<string> {
    const key = `${this.account.did} ${name} ${actions}`
    let token = this.#tokens.get(key)
    if (!token) {
      const basic = Buffer.from(`${this.account.did}:${this.account.appPassword}`).toString(
        'base64',
      )
      const query = new URLSearchParams({
        service: this.service,
        scope: `repository:${name}:${actions}`,
      })
      token = this.send(
        'token',
        `/auth/token?${query}`,
        { headers: { authorization: `Basic ${basic}` } },
        [200],
      )
        .then((r) => r.json() as Promise<{ token: string }>)
        .then((body) => body.token)
      token.catch(() => this.#tokens.delete(key))
      this.#tokens.set(key, token)
    }
    return token
  }

  /** One request; any status outside `expected` is a Refused (the body kept for the report). */
  async send(
    op: string,
    path: string,
    init: RequestInit & { token?: string } = {},
    expected: number[] = [200],
  ): Promise<Response> {
    const headers = new Headers(init.headers)
    if (init.token) headers.set('authorization', `Bearer ${init.token}`)
    const started = performance.now()
    let response: Response
    try {
      response = await fetch(path.startsWith('http') ? path : `${this.base}${path}`, {
        ...init,
        headers,
      })
    } catch (error) {
      this.tally.count(`${op} failed`)
      throw new Refused(0, `${op} ${init.method ?? 'GET'} ${path}: ${(error as Error).message}`)
    }
    this.tally.took(op, performance.now() - started)
    this.tally.count(`${op} ${response.status}`)
    if (!expected.includes(response.status)) {
      const body = (await response.text()).slice(0, 300)
      throw new Refused(
        response.status,
        `${op} ${init.method ?? 'GET'} ${path.slice(0, 120)} -> ${response.status} ${body}`,
      )
    }
    return response
  }

  /** A blob, monolithic (POST ?digest=) or chunked (POST, PATCHes, PUT). */
  async pushBlob(name: string, token: string, bytes: Buffer, chunks: number): Promise<string> {
    const digest = sha256(bytes)
    const uploads = `/v2/${name}/blobs/uploads/`
    if (chunks === 0) {
      const stored = await this.send(
        'blob-monolithic',
        `${uploads}?digest=${digest}`,
        {
          method: 'POST',
          token,
          headers: { 'content-type': 'application/octet-stream' },
          body: bytes,
        },
        [201],
      )
      await stored.body?.cancel()
      return digest
    }
    let location = await this.open(name, token)
    const size = Math.ceil(bytes.byteLength / chunks)
    for (let offset = 0; offset < bytes.byteLength; offset += size) {
      const chunk = bytes.subarray(offset, offset + size)
      const patched = await this.send(
        'blob-patch',
        location,
        {
          method: 'PATCH',
          token,
          headers: {
            'content-type': 'application/octet-stream',
            'content-range': `${offset}-${offset + chunk.byteLength - 1}`,
          },
          body: chunk,
        },
        [202],
      )
      await patched.body?.cancel()
      location = new URL(patched.headers.get('location')!, this.base).href
    }
    const put = await this.send(
      'blob-put',
      `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`,
      {
        method: 'PUT',
        token,
      },
      [201],
    )
    await put.body?.cancel()
    return digest
  }

  async open(name: string, token: string): Promise<string> {
    const opened = await this.send(
      'blob-post',
      `/v2/${name}/blobs/uploads/`,
      { method: 'POST', token },
      [202],
    )
    await opened.body?.cancel()
    return new URL(opened.headers.get('location')!, this.base).href
  }

  async pushImage(
    name: string,
    tag: string,
    layers: { bytes: Buffer; chunks: number }[],
  ): Promise<PushedImage> {
    const token = await this.token(name, 'pull,push,delete')
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        tag,
        n: randomBytes(8).toString('hex'),
      }),
    )
    const blobs = new Map<string, number>()
    const configDigest = await this.pushBlob(name, token, config, 0)
    blobs.set(configDigest, config.byteLength)
    const descriptors = []
    for (const layer of layers) {
      const digest = await this.pushBlob(name, token, layer.bytes, layer.chunks)
      blobs.set(digest, layer.bytes.byteLength)
      descriptors.push({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest,
        size: layer.bytes.byteLength,
      })
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: configDigest,
          size: config.byteLength,
        },
        layers: descriptors,
      }),
    )
    const put = await this.send(
      'manifest-put',
      `/v2/${name}/manifests/${tag}`,
      {
        method: 'PUT',
        token,
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
        body: manifest,
      },
      [201],
    )
    await put.body?.cancel()
    return { name, tag, digest: sha256(manifest), blobs }
  }

  /** Pulls an image signed in and checks every byte. */
  async pull(image: PushedImage): Promise<void> {
    const token = await this.token(image.name, 'pull')
    const got = await this.send('manifest-get', `/v2/${image.name}/manifests/${image.tag}`, {
      token,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
    })
    const manifest = Buffer.from(await got.arrayBuffer())
    if (sha256(manifest) !== image.digest) {
      throw new Refused(200, `${image.name}:${image.tag} answered another manifest`)
    }
    for (const [digest, size] of image.blobs) {
      const blob = await this.send('blob-get', `/v2/${image.name}/blobs/${digest}`, { token })
      const bytes = Buffer.from(await blob.arrayBuffer())
      if (bytes.byteLength !== size || sha256(bytes) !== digest) {
        throw new Refused(
          200,
          `${image.name} ${digest}: ${bytes.byteLength} bytes that do not match`,
        )
      }
    }
  }
}

/** RSS, open file descriptors and CPU seconds (user + system) of a process. */
function usage(pid: number): { rssMiB: number; fds: number; cpu: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  // Fields 14 and 15 of /proc/<pid>/stat, after the command name in parentheses.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpu = (Number(fields[11]) + Number(fields[12])) / 100
  return { rssMiB: Math.round(rss / 1024), fds: readdirSync(`/proc/${pid}/fd`).length, cpu }
}

/** Files left under `dir` (recursively) whose path passes `keep`. */
async function filesUnder(dir: string, keep: (path: string) => boolean): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name)
    if (entry.isFile() && keep(path)) found.push(path)
  }
  return found
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return Number(line?.split(' ')[1] ?? Number.NaN)
}

describe('load: 50 clients against two AppViews behind HAProxy', { skip }, () => {
  let net: TestNetwork
  let postgres: TestPostgres
  let hold: HoldProcess
  let balancer: TestHaproxy
  let root: string
  let dataDir: string
  let base: string
  let service: string
  let holdMetrics: number
  const appviewMetrics: number[] = []
  const appviews: AppViewProcess[] = []
  const accounts: TestAccount[] = []
  const tokens = new Map<string, Promise<string>>()
  const pushed: PushedImage[] = []
  const processes = () => [
    ...appviews.map((a, i) => ({
      name: `appview${i + 1}`,
      pid: a.pid,
      child: a.child,
      output: a.output,
    })),
    { name: 'hold', pid: hold.child.pid!, child: hold.child, output: hold.output },
  ]
  /** Fails with what a service printed when it is no longer running. */
  const assertAllRunning = () => {
    for (const p of processes()) {
      const { exitCode, signalCode } = p.child
      assert.ok(
        exitCode === null && signalCode === null,
        `${p.name} exited (${exitCode ?? signalCode}):\n${p.output()}`,
      )
    }
  }
  let warm: Map<string, { rssMiB: number; fds: number }>

  const client = (i: number, tally: Tally) =>
    new Client(base, service, accounts[i % ACCOUNTS]!, tally, tokens)
  const repoOf = (i: number) => `${clientSafeDid(accounts[i % ACCOUNTS]!.did)}/load-${i}`

  before(async () => {
    ;[net, postgres, root] = await Promise.all([
      startNetwork(),
      startPostgres(),
      makeTempDir('atcr-load-'),
    ])
    for (let i = 0; i < ACCOUNTS; i++) accounts.push(await net.pds.createAccount(`load${i}.test`))
    holdMetrics = await freePort()
    hold = await startHoldProcess({
      plcUrl: net.plc.url,
      ownerDid: accounts[0]!.did,
      config: {
        uploads: { expiry: HOLD_EXPIRY_SECONDS, max_open_per_account: 1000 },
        metrics: { port: holdMetrics },
      },
    })
    const url = await postgres.createDatabase('appview')
    dataDir = join(root, 'shared')
    const port = await freePort()
    service = `127.0.0.1:${port}`
    base = `http://${service}`
    for (let i = 0; i < 2; i++) {
      appviewMetrics.push(await freePort())
      appviews.push(
        await startAppViewProcess({
          dataDir,
          plcUrl: net.plc.url,
          handleResolverUrl: net.pds.url,
          baseUrl: base,
          config: {
            database: { url },
            registry: {
              default_hold_did: hold.did,
              upload_part_size: PART,
              upload_idle_timeout: APPVIEW_IDLE_SECONDS,
              max_uploads_per_account: 1000,
            },
            auth: { rate_limit: { token_per_address: 100_000, token_per_account: 100_000 } },
            metrics: { port: appviewMetrics[i]! },
          },
        }),
      )
    }
    balancer = await startHaproxy({
      port,
      checkPath: '/v2/',
      backends: appviews.map((p, i) => ({ name: `appview${i + 1}`, port: p.port })),
    })
  })

  after(async () => {
    await balancer?.close()
    for (const appview of appviews) await appview.kill('SIGKILL')
    await hold?.close()
    await net?.close()
    await postgres?.close()
    if (root) await removeTempDir(root)
  })

  it('warms up: each client pushes and pulls one image', async () => {
    const tally = new Tally()
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        const c = client(i, tally)
        const image = await c.pushImage(repoOf(i), 'warm', [
          { bytes: randomBytes(64 * KiB), chunks: 0 },
        ])
        pushed.push(image)
        await c.pull(image)
      }),
    )
    await sleep(6000) // keep-alive connections of the burst close
    warm = new Map(processes().map((p) => [p.name, usage(p.pid)]))
    console.log(
      `warm: ${[...warm].map(([n, u]) => `${n} ${u.rssMiB} MiB ${u.fds} fds`).join(', ')}`,
    )
  })

  it(`answers ${CLIENTS} clients for ${SECONDS} s without one unexpected answer`, async () => {
    const tally = new Tally()
    const shared = Array.from({ length: 3 }, () => randomBytes(MiB))
    const deadline = Date.now() + SECONDS * 1000
    const watched = [...processes(), { name: 'test (clients, PLC, PDS)', pid: process.pid }]
    const cpuBefore = watched.map((p) => usage(p.pid).cpu)
    // Peak RSS in each half of the run: a leak keeps growing, memory a burst left behind
    // does not (the allocator keeps it, reused by the second half).
    const halfway = Date.now() + (SECONDS * 1000) / 2
    const peaks = [new Map<string, number>(), new Map<string, number>()] as const
    const sampler = setInterval(() => {
      const peak = peaks[Date.now() < halfway ? 0 : 1]
      for (const p of processes()) {
        peak.set(p.name, Math.max(peak.get(p.name) ?? 0, usage(p.pid).rssMiB))
      }
    }, 1000)
    try {
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, i) => {
          const c = client(i, tally)
          const name = repoOf(i)
          for (let k = 0; Date.now() < deadline; k++) {
            try {
              const step = k % 10
              if (step < 2) {
                const layers = [
                  { bytes: randomBytes((4 + ((i * 7 + k * 13) % 252)) * KiB), chunks: k % 2 },
                ]
                if (k % 3 === 0) layers.push({ bytes: shared[(i + k) % shared.length]!, chunks: 0 })
                if (k % 20 === 1) layers.push({ bytes: randomBytes(6 * MiB), chunks: 2 })
                pushed.push(await c.pushImage(name, `v${k}`, layers))
              } else if (step < 7) {
                await c.pull(pushed[(i * 31 + k * 17) % pushed.length]!)
              } else if (step === 7) {
                const token = await c.token(name, 'pull')
                const list = await c.send('tags-list', `/v2/${name}/tags/list?n=1000`, { token })
                const { tags } = (await list.json()) as { tags: string[] }
                if (!tags.includes('warm')) throw new Refused(200, `${name}: tags/list lost warm`)
              } else {
                // An upload given up: cancelled (DELETE), or abandoned to expire.
                const token = await c.token(name, 'pull,push,delete')
                const location = await c.open(name, token)
                const patched = await c.send(
                  'blob-patch',
                  location,
                  {
                    method: 'PATCH',
                    token,
                    headers: { 'content-type': 'application/octet-stream' },
                    body: randomBytes(step === 8 ? 32 * KiB : 2 * MiB),
                  },
                  [202],
                )
                await patched.body?.cancel()
                if (step === 8) {
                  const next = new URL(patched.headers.get('location')!, base).href
                  await (
                    await c.send('blob-delete', next, { method: 'DELETE', token }, [204])
                  ).body?.cancel()
                }
              }
            } catch (error) {
              tally.unexpected.push((error as Error).message)
              if (tally.unexpected.length > 20) throw error
            }
          }
        }),
      )
    } finally {
      clearInterval(sampler)
    }
    console.log(`load: ${tally.report()}`)
    const [first, second] = peaks
    console.log(
      `peak RSS, first half / second half: ${processes()
        .map((p) => `${p.name} ${first.get(p.name)} / ${second.get(p.name)} MiB`)
        .join(', ')}`,
    )
    const cpu = watched.map(
      (p, i) => `${p.name} ${(usage(p.pid).cpu - cpuBefore[i]!).toFixed(1)} s`,
    )
    console.log(`CPU over ${SECONDS} s: ${cpu.join(', ')}`)
    assertAllRunning()
    assert.deepEqual(tally.unexpected.slice(0, 10), [])
    assert.ok(pushed.length > CLIENTS * 2, `only ${pushed.length} images pushed`)
    for (const { name } of processes()) {
      const [a, b] = [first.get(name)!, second.get(name)!]
      assert.ok(b <= a * 1.25 + 32, `${name}: peak RSS grew from ${a} to ${b} MiB`)
    }
  })

  it('goes on through a PostgreSQL crash and restart under load: 503s, never a 500, nothing lost', async () => {
    const tally = new Tally()
    const statuses = new Map<number, number>()
    const outage = { start: Date.now() + 8000, end: Date.now() + 16000 }
    const deadline = Date.now() + 30_000
    const fault = (async () => {
      await sleep(outage.start - Date.now())
      await postgres.crash()
      await sleep(outage.end - Date.now())
      await postgres.restart()
    })()
    const pushedHere: PushedImage[] = []
    await Promise.all(
      Array.from({ length: OUTAGE_CLIENTS }, async (_, i) => {
        const c = client(i, tally)
        for (let k = 0; Date.now() < deadline; k++) {
          // Each operation retried whole on a retryable answer, as docker retries a layer.
          for (let attempt = 0; ; attempt++) {
            try {
              if (k % 2 === 0) {
                pushedHere.push(
                  await c.pushImage(repoOf(i), `outage-${k}`, [
                    { bytes: randomBytes(48 * KiB), chunks: k % 4 === 0 ? 1 : 0 },
                  ]),
                )
              } else {
                await c.pull(pushed[(i * 13 + k) % pushed.length]!)
              }
              break
            } catch (error) {
              const status = error instanceof Refused ? error.status : -1
              statuses.set(status, (statuses.get(status) ?? 0) + 1)
              if (!(error instanceof Refused) || !error.retryable || attempt > 60) {
                tally.unexpected.push((error as Error).message)
                break
              }
              await sleep(500)
            }
          }
        }
      }),
    )
    await fault
    console.log(`outage: ${tally.report()}; refusals by status ${JSON.stringify([...statuses])}`)
    assertAllRunning()
    assert.deepEqual(tally.unexpected.slice(0, 10), [])
    assert.ok((statuses.get(503) ?? 0) > 0, 'the outage was seen (503s)')
    assert.equal(statuses.get(500), undefined, 'no 500 during the outage')
    pushed.push(...pushedHere)
  })

  it('pulls back every image it said it stored, byte for byte', async () => {
    const tally = new Tally()
    const queue = [...pushed]
    await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const c = client(i, tally)
        for (let image = queue.pop(); image; image = queue.pop()) {
          try {
            await c.pull(image)
          } catch (error) {
            tally.unexpected.push((error as Error).message)
          }
        }
      }),
    )
    console.log(`verified ${pushed.length} images: ${tally.report()}`)
    assertAllRunning()
    assert.deepEqual(tally.unexpected.slice(0, 10), [])
  })

  it('leaves no upload session, spill file or temp file; descriptors come back, memory bounded', async () => {
    // Abandoned sessions expire after APPVIEW_IDLE_SECONDS (the AppView aborts them on the
    // hold); the hold sweeps its own after HOLD_EXPIRY_SECONDS.
    assertAllRunning()
    const settled = Date.now() + (HOLD_EXPIRY_SECONDS + 40) * 1000
    let state = ''
    for (;;) {
      const sessions = await Promise.all([
        ...appviewMetrics.map((port) => metric(port, 'atcr_upload_sessions')),
        metric(holdMetrics, 'atcr_upload_sessions'),
      ])
      const spills = await filesUnder(join(dataDir, 'uploads'), () => true)
      const temps = await filesUnder(
        hold.dataDir,
        (p) => p.includes('/.tmp/') || p.includes('/uploads/'),
      )
      const now = processes().map((p) => ({ ...p, ...usage(p.pid) }))
      const fdsBack = now.every((p) => p.fds <= warm.get(p.name)!.fds + 10)
      state = `sessions ${sessions.join('/')}, spill files ${spills.length}, hold temp files ${temps.length} ${temps.slice(0, 3).join(' ')}; ${now
        .map(
          (p) =>
            `${p.name} ${p.rssMiB} MiB (warm ${warm.get(p.name)!.rssMiB}), ${p.fds} fds (warm ${warm.get(p.name)!.fds})`,
        )
        .join('; ')}`
      if (
        (sessions.every((n) => n === 0) && spills.length === 0 && temps.length === 0 && fdsBack) ||
        Date.now() > settled
      ) {
        break
      }
      await sleep(2000)
    }
    console.log(`after: ${state}`)
    for (const port of [...appviewMetrics, holdMetrics]) {
      const heap = await Promise.all(
        [
          'nodejs_heap_size_used_bytes',
          'nodejs_heap_size_total_bytes',
          'nodejs_external_memory_bytes',
        ].map(
          async (name) =>
            `${name.replace('nodejs_', '')} ${Math.round((await metric(port, name)) / MiB)} MiB`,
        ),
      )
      console.log(`metrics :${port}: ${heap.join(', ')}`)
    }
    const sessions = await Promise.all([
      ...appviewMetrics.map((port) => metric(port, 'atcr_upload_sessions')),
      metric(holdMetrics, 'atcr_upload_sessions'),
    ])
    assert.deepEqual(sessions, [0, 0, 0], state)
    assert.deepEqual(await filesUnder(join(dataDir, 'uploads'), () => true), [], state)
    assert.deepEqual(
      await filesUnder(hold.dataDir, (p) => p.includes('/.tmp/') || p.includes('/uploads/')),
      [],
      state,
    )
    for (const p of processes()) {
      const { rssMiB, fds } = usage(p.pid)
      const before = warm.get(p.name)!
      assert.ok(
        fds <= before.fds + 10,
        `${p.name}: ${fds} descriptors open, ${before.fds} after warm-up`,
      )
      assert.ok(
        rssMiB <= before.rssMiB * 2,
        `${p.name}: ${rssMiB} MiB resident, ${before.rssMiB} after warm-up`,
      )
    }
  })
})
