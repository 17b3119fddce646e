// Blob upload sessions against AppViews in child processes (the atcr-appview executable),
// a real hold process and a real PLC and PDS: memory bounded whatever the open uploads, the
// per-account cap, idle expiry, an upload continued after a SIGKILL and restart, and one
// begun on one AppView and finished on another sharing its database and data_dir.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import {
  type AppViewProcess,
  freePort,
  type HoldProcess,
  makeTempDir,
  removeTempDir,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestAccount,
  type TestNetwork,
} from '@atcr/testkit'
import Database from 'better-sqlite3'
import { clientSafeDid } from '../src/names.ts'

const MiB = 1024 * 1024
const PART = 5 * MiB

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  const body = (await response.json()) as { errors: { code: string; message: string }[] }
  return body.errors[0]!
}

/** A pusher of one account into one repository, against one AppView process. */
class Client {
  readonly account: TestAccount
  readonly name: string
  /** The registry's service name (the host of its base_url). */
  readonly service: string
  #token: string | undefined

  constructor(account: TestAccount, repository: string, service: string) {
    this.account = account
    this.name = `${clientSafeDid(account.did)}/${repository}`
    this.service = service
  }

  async token(appview: AppViewProcess): Promise<string> {
    if (this.#token) return this.#token
    const query = new URLSearchParams({ service: this.service })
    query.append('scope', `repository:${this.name}:pull,push`)
    const basic = Buffer.from(`${this.account.did}:${this.account.appPassword}`).toString('base64')
    const response = await fetch(`${appview.url}/auth/token?${query}`, {
      headers: { authorization: `Basic ${basic}` },
    })
    const body = (await response.json()) as { token?: string }
    assert.ok(response.ok && body.token, `/auth/token answered ${response.status}`)
    this.#token = body.token
    return body.token
  }

  async fetch(appview: AppViewProcess, path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    headers.set('authorization', `Bearer ${await this.token(appview)}`)
    return fetch(`${appview.url}${path}`, { ...init, headers })
  }

  /** POST: opens a session; its Location. */
  async open(appview: AppViewProcess): Promise<string> {
    const response = await this.fetch(appview, `/v2/${this.name}/blobs/uploads/`, {
      method: 'POST',
    })
    assert.equal(response.status, 202, await response.clone().text())
    return response.headers.get('location')!
  }

  /** PATCH; `streamed` sends the bytes without a Content-Length (chunked). */
  async patch(
    appview: AppViewProcess,
    location: string,
    bytes: Uint8Array,
    start: number,
    { streamed = false } = {},
  ) {
    return this.fetch(appview, location, {
      method: 'PATCH',
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${start}-${start + bytes.byteLength - 1}`,
      },
      ...(streamed
        ? { body: new Blob([bytes]).stream(), duplex: 'half' as const }
        : { body: bytes }),
    })
  }

  async put(appview: AppViewProcess, location: string, digest: string, body?: Uint8Array) {
    return this.fetch(appview, `${location}?digest=${digest}`, {
      method: 'PUT',
      ...(body ? { headers: { 'content-type': 'application/octet-stream' }, body } : {}),
    })
  }

  async blob(appview: AppViewProcess, digest: string): Promise<Buffer> {
    const response = await this.fetch(appview, `/v2/${this.name}/blobs/${digest}`)
    assert.equal(response.status, 200, `GET ${digest}`)
    return Buffer.from(await response.arrayBuffer())
  }
}

function uuidOf(location: string): string {
  return location.split('/').at(-1)!
}

/** VmRSS of a process, in bytes. */
function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))
  const kib = Number(/(\d+)/.exec(line ?? '')?.[1])
  assert.ok(Number.isFinite(kib), 'VmRSS not found')
  return kib * 1024
}

/** The hold's upload rows (read-only, from its database file). */
function holdUploads(hold: HoldProcess): { id: string; digest: string | null }[] {
  const db = new Database(join(hold.dataDir, 'hold.sqlite'), { readonly: true })
  try {
    return db.prepare('SELECT id, digest FROM hold_upload').all() as {
      id: string
      digest: string | null
    }[]
  } finally {
    db.close()
  }
}

/** The digests of the hold's debug lines `msg` (null: without one), e.g. 'upload initiated'. */
function loggedDigests(hold: HoldProcess, msg = 'upload initiated'): (string | null)[] {
  const out: (string | null)[] = []
  for (const line of hold.output().split('\n')) {
    if (!line.includes(msg)) continue
    try {
      const entry = JSON.parse(line) as { msg?: string; digest?: string | null }
      if (entry.msg === msg) out.push(entry.digest ?? null)
    } catch {
      // A line cut by the output bound.
    }
  }
  return out
}

/**
 * The hold's log lines (`read`) come to show `expected`: they reach us through its stdout,
 * which may lag behind the AppView's answer.
 */
async function logShows(read: () => (string | null)[], expected: (string | null)[]) {
  await until('the hold log lines', () => isDeepStrictEqual(read(), expected)).catch(() => {})
  assert.deepEqual(read(), expected)
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('blob uploads across AppView processes', () => {
  let net: TestNetwork
  let hold: HoldProcess
  let alice: TestAccount
  let bob: TestAccount
  let root: string
  const running: AppViewProcess[] = []

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    hold = await startHoldProcess({ plcUrl: net.plc.url, ownerDid: alice.did, logLevel: 'debug' })
    root = await makeTempDir('atcr-uploads-')
  })
  after(async () => {
    for (const appview of running) await appview.kill('SIGKILL')
    await hold?.close()
    await net?.close()
    if (root) await removeTempDir(root)
  })

  async function appview(
    dir: string,
    registry: Record<string, unknown>,
    more: { port?: number; baseUrl?: string; metricsPort?: number } = {},
  ): Promise<AppViewProcess> {
    const { metricsPort, ...options } = more
    const started = await startAppViewProcess({
      dataDir: join(root, dir),
      plcUrl: net.plc.url,
      handleResolverUrl: net.pds.url,
      ...options,
      config: {
        registry: { default_hold_did: hold.did, ...registry },
        ...(metricsPort ? { metrics: { port: metricsPort } } : {}),
      },
    })
    running.push(started)
    return started
  }

  it('keeps memory bounded with 60 open uploads of 15 MiB each, all of which can still finish', async (t) => {
    const server = await appview('memory', {})
    const client = new Client(alice, 'memory', new URL(server.url).host)
    const base = randomBytes(15 * MiB)
    const blobOf = (i: number) => {
      const bytes = Buffer.from(base)
      bytes.writeUInt32BE(i, 0)
      return bytes
    }
    const before = rssOf(server.pid)
    const locations: string[] = []
    for (let i = 0; i < 60; i++) {
      const location = await client.open(server)
      const patch = await client.patch(server, location, blobOf(i), 0)
      assert.equal(patch.status, 202, await patch.clone().text())
      assert.equal(patch.headers.get('range'), `0-${15 * MiB - 1}`)
      locations.push(location)
    }
    const rss = rssOf(server.pid)
    t.diagnostic(
      `AppView VmRSS: ${(before / MiB).toFixed(0)} MiB before, ${(rss / MiB).toFixed(0)} MiB with 60 uploads of 15 MiB open`,
    )
    assert.ok(rss < 300 * MiB, `VmRSS ${(rss / MiB).toFixed(0)} MiB`)

    // A sample finishes with the right content; the rest are cancelled.
    const sample = new Set([0, 17, 42, 59])
    for (const [i, location] of locations.entries()) {
      if (sample.has(i)) {
        const bytes = blobOf(i)
        const done = await client.put(server, location, sha256(bytes))
        assert.equal(done.status, 201, await done.clone().text())
        assert.ok((await client.blob(server, sha256(bytes))).equals(bytes), `blob ${i}`)
      } else {
        const cancelled = await client.fetch(server, location, { method: 'DELETE' })
        assert.equal(cancelled.status, 204)
      }
      assert.ok(!existsSync(join(server.dataDir, 'uploads', uuidOf(location))))
    }
    t.diagnostic(`AppView VmRSS after finishing: ${(rssOf(server.pid) / MiB).toFixed(0)} MiB`)
    await server.kill()
  })

  it('frees the chunks of an upload as they are stored and sent, not at a later garbage collection', async (t) => {
    const metricsPort = await freePort()
    const server = await appview('release', { upload_part_size: PART }, { metricsPort })
    const client = new Client(alice, 'release', new URL(server.url).host)
    // Memory outside V8's heap: Buffers, so the socket chunks of a request body.
    const external = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
      const line = text.split('\n').find((l) => l.startsWith('nodejs_external_memory_bytes '))
      return Number(line?.split(' ')[1])
    }
    const before = await external()
    for (const streamed of [false, true]) {
      // With a Content-Length, full parts go to the hold only; without, also to the spill file.
      const bytes = randomBytes(8 * PART + 4321)
      const location = await client.open(server)
      const patch = await client.patch(server, location, bytes, 0, { streamed })
      assert.equal(patch.status, 202, await patch.clone().text())
      const kept = (await external()) - before
      const said = `${(kept / MiB).toFixed(1)} MiB more Buffers after ${bytes.length >> 20} MiB`
      t.diagnostic(said)
      assert.ok(kept < 3 * MiB, said)
      assert.equal((await client.put(server, location, sha256(bytes))).status, 201)
      assert.ok((await client.blob(server, sha256(bytes))).equals(bytes))
    }
    await server.kill()
  })

  it('refuses an upload beyond the per-account cap with 429 TOOMANYREQUESTS', async () => {
    const server = await appview('cap', { max_uploads_per_account: 3 })
    const client = new Client(bob, 'capped', new URL(server.url).host)
    const open = [await client.open(server), await client.open(server), await client.open(server)]
    const refused = await client.fetch(server, `/v2/${client.name}/blobs/uploads/`, {
      method: 'POST',
    })
    assert.equal(refused.status, 429)
    const error = await errorOf(refused)
    assert.equal(error.code, 'TOOMANYREQUESTS')
    assert.match(error.message, /3 blob uploads open/)

    // Cancelling one makes room; so does finishing one.
    assert.equal((await client.fetch(server, open[0]!, { method: 'DELETE' })).status, 204)
    open[0] = await client.open(server)
    const bytes = randomBytes(1000)
    assert.equal((await client.patch(server, open[1]!, bytes, 0)).status, 202)
    assert.equal((await client.put(server, open[1]!, sha256(bytes))).status, 201)
    await client.open(server)
    const again = await client.fetch(server, `/v2/${client.name}/blobs/uploads/`, {
      method: 'POST',
    })
    assert.equal(again.status, 429)
    await server.kill()
  })

  it('expires an idle upload: aborted on the hold, its spill file removed, then unknown', async () => {
    const server = await appview('expiry', { upload_idle_timeout: 1, upload_part_size: PART })
    const client = new Client(bob, 'idle', new URL(server.url).host)
    const location = await client.open(server)
    // More than a part: the hold's upload begins (streamed: without a digest).
    const patch = await client.patch(server, location, randomBytes(PART + MiB), 0)
    assert.equal(patch.status, 202, await patch.clone().text())
    const spill = join(server.dataDir, 'uploads', uuidOf(location))
    assert.ok(existsSync(spill))
    const holdRows = holdUploads(hold)
    assert.equal(holdRows.length, 1)
    assert.equal(holdRows[0]!.digest, null, 'a streamed upload names no digest to the hold')

    await until('the sweeper ends the session', () => !existsSync(spill))
    assert.deepEqual(holdUploads(hold), [], 'the hold upload was aborted')
    const status = await client.fetch(server, location)
    assert.equal(status.status, 404)
    assert.equal((await errorOf(status)).code, 'BLOB_UPLOAD_UNKNOWN')
    await server.kill()
  })

  it('continues an upload after the AppView is killed and started again on the same data', async () => {
    let server = await appview('restart', { upload_part_size: PART })
    const client = new Client(alice, 'restart', new URL(server.url).host)
    const bytes = randomBytes(12 * MiB + 4321)
    const digest = sha256(bytes)
    const location = await client.open(server)
    const cut = 7 * MiB
    const first = await client.patch(server, location, bytes.subarray(0, cut), 0)
    assert.equal(first.status, 202, await first.clone().text())

    const { port, dataDir } = server
    await server.kill('SIGKILL')
    server = await appview('restart', { upload_part_size: PART }, { port })
    assert.equal(server.dataDir, dataDir)

    const status = await client.fetch(server, location)
    assert.equal(status.status, 204)
    assert.equal(status.headers.get('range'), `0-${cut - 1}`)
    const rest = await client.patch(server, location, bytes.subarray(cut), cut)
    assert.equal(rest.status, 202, await rest.clone().text())
    const done = await client.put(server, location, digest)
    assert.equal(done.status, 201, await done.clone().text())
    assert.ok((await client.blob(server, digest)).equals(bytes))

    // A wrong digest after a restart is caught by the hold's own check.
    const other = randomBytes(PART + 10)
    const second = await client.open(server)
    assert.equal((await client.patch(server, second, other, 0)).status, 202)
    await server.kill('SIGKILL')
    server = await appview('restart', { upload_part_size: PART }, { port })
    const wrong = await client.put(server, second, sha256(randomBytes(10)))
    assert.equal(wrong.status, 400)
    assert.equal((await errorOf(wrong)).code, 'DIGEST_INVALID')
    await server.kill()
  })

  it('keeps what a cut-off chunk delivered to stored parts and the spill file, and resumes from there', async () => {
    const server = await appview('cut', { upload_part_size: PART })
    const client = new Client(alice, 'cut', new URL(server.url).host)
    const bytes = randomBytes(3 * PART + 999)
    const digest = sha256(bytes)
    const location = await client.open(server)
    // A PATCH announcing every byte, cut off after a part and a half: the part being
    // streamed to the hold when the client went away is not kept.
    const sent = PART + PART / 2
    const url = new URL(location, server.url)
    await new Promise<void>((resolve) => {
      void client.token(server).then((token) => {
        const request = httpRequest(url, {
          method: 'PATCH',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/octet-stream',
            'content-length': String(bytes.length),
          },
        })
        request.on('error', () => resolve())
        request.write(bytes.subarray(0, sent), () => setTimeout(() => request.destroy(), 500))
        request.on('close', () => resolve())
      })
    })
    // An empty PATCH is refused (416) while the cut-off request still holds the upload.
    let kept = -1
    await until('the cut-off request to end', async () => {
      const empty = await client.fetch(server, location, { method: 'PATCH' })
      if (empty.status !== 202) return false
      kept = Number(empty.headers.get('range')?.split('-')[1]) + 1
      return true
    })
    assert.ok(kept >= PART && kept <= sent, `kept ${kept} of ${sent}`)
    const rest = await client.patch(server, location, bytes.subarray(kept), kept)
    assert.equal(rest.status, 202, await rest.clone().text())
    const done = await client.put(server, location, digest)
    assert.equal(done.status, 201, await done.clone().text())
    assert.ok((await client.blob(server, digest)).equals(bytes))
    await server.kill()
  })

  it('takes a PATCH on one AppView and the PUT on another sharing its database and data_dir', async () => {
    const one = await appview('shared', { upload_part_size: PART })
    // Both answer under one name, as instances behind a load balancer do.
    const two = await appview('shared', { upload_part_size: PART }, { baseUrl: one.url })
    const client = new Client(alice, 'shared', new URL(one.url).host)
    const bytes = randomBytes(12 * MiB + 99)
    const digest = sha256(bytes)
    const location = await client.open(one)
    const cut = 7 * MiB
    assert.equal((await client.patch(one, location, bytes.subarray(0, cut), 0)).status, 202)

    // While a request writes on one, a request on the other is refused.
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let sent!: () => void
    const started = new Promise<void>((resolve) => {
      sent = resolve
    })
    const slow = client.fetch(one, location, {
      method: 'PATCH',
      body: ReadableStream.from(
        (async function* () {
          yield bytes.subarray(cut, cut + MiB)
          sent()
          await held
          yield bytes.subarray(cut + MiB, cut + 2 * MiB)
        })(),
      ),
      duplex: 'half',
    } as RequestInit)
    await started
    // An empty PATCH changes nothing: it probes until the first request has its lease.
    let refused: Response | undefined
    await until('the first request holds the session', async () => {
      const response = await client.fetch(two, location, { method: 'PATCH' })
      if (response.status === 416) refused = response
      else await response.body?.cancel()
      return refused !== undefined
    })
    assert.match((await errorOf(refused!)).message, /another request is writing/)
    release()
    assert.equal((await slow).status, 202)

    const done = await client.put(two, location, digest, bytes.subarray(cut + 2 * MiB))
    assert.equal(done.status, 201, await done.clone().text())
    assert.ok((await client.blob(one, digest)).equals(bytes))
    assert.ok((await client.blob(two, digest)).equals(bytes))
    await one.kill()
    await two.kill()
  })

  it('names the digest to the hold for a monolithic upload, and none for a streamed one; small blobs go in one hold call', async () => {
    const server = await appview('digests', { upload_part_size: PART })
    const client = new Client(alice, 'digests', new URL(server.url).host)
    const small = randomBytes(4096)
    // The hold's output is kept bounded (its head drops off): read the newest entries.
    const newest = (n: number) => loggedDigests(hold).slice(-n)
    const oneCall = (n: number) => loggedDigests(hold, 'blob uploaded in one call').slice(-n)
    const put = await client.fetch(
      server,
      `/v2/${client.name}/blobs/uploads/?digest=${sha256(small)}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: small,
      },
    )
    assert.equal(put.status, 201, await put.clone().text())
    await logShows(() => newest(1), [sha256(small)])
    await logShows(() => oneCall(1), [sha256(small)])
    assert.ok((await client.blob(server, sha256(small))).equals(small))

    // POST, PATCH, PUT (as skopeo pushes): the PUT stores the blob in one hold call too.
    const chunked = randomBytes(5000)
    const opened = await client.open(server)
    assert.equal((await client.patch(server, opened, chunked, 0)).status, 202)
    assert.equal((await client.put(server, opened, sha256(chunked))).status, 201)
    await logShows(() => oneCall(1), [sha256(chunked)])
    assert.ok((await client.blob(server, sha256(chunked))).equals(chunked))
    // A wrong digest: DIGEST_INVALID.
    const wrong = await client.open(server)
    assert.equal((await client.patch(server, wrong, randomBytes(300), 0)).status, 202)
    const refused = await client.put(server, wrong, sha256(Buffer.from('not these bytes')))
    assert.equal(refused.status, 400)
    assert.equal(
      ((await refused.json()) as { errors: { code: string }[] }).errors[0]?.code,
      'DIGEST_INVALID',
    )

    const streamed = randomBytes(PART + 100)
    const location = await client.open(server)
    assert.equal((await client.patch(server, location, streamed, 0)).status, 202)
    await logShows(() => newest(2), [sha256(chunked), null])
    assert.equal((await client.put(server, location, sha256(streamed))).status, 201)
    assert.deepEqual(oneCall(1), [sha256(chunked)], 'a blob of several parts goes part by part')
    assert.ok((await client.blob(server, sha256(streamed))).equals(streamed))
    await server.kill()
  })
})
