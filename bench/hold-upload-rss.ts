// Uploads a 1 GiB blob to a hold (filesystem driver) running in a child process, through
// io.atcr.hold.uploadPart in several parts, and reports the hold's peak RSS and the upload
// throughput, the latter as a ratio against a reference: the same bytes PUT over loopback
// HTTP into a file by a bare node:http server (also a child process, also fdatasync'ed).
//
//   source scripts/env.sh && node bench/hold-upload-rss.ts [--size-mib 1024] [--part-mib 128]
//     [--budget-mib 200] [--hold-node-option=--max-semi-space-size=32 ...]
//     [--hold-bin /tmp/before/apps/hold/bin/atcr-hold]
//
// Exits 1 when the hold's peak RSS reaches the budget (200 MiB). See bench/README.md.
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { freePort, startPlc } from '@atcr/testkit'
import { loadOrCreateKeypair } from '../packages/core/src/identity/index.ts'
import { createPlcIdentity } from '../packages/core/src/identity/plc.ts'
import { mintServiceAuthToken } from '../packages/core/src/service-auth/index.ts'
import { cpuSeconds, statusKiB } from './lib/processes.ts'

const MiB = 1024 * 1024
const CHUNK = MiB
const DEFAULT_HOLD_BIN = new URL('../apps/hold/bin/atcr-hold', import.meta.url).pathname

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'part-mib': { type: 'string', default: '128' },
    'budget-mib': { type: 'string', default: '200' },
    // Node options for the hold (before its bin), e.g. to compare V8 settings.
    // As the first line of apps/hold/bin/atcr-hold passes it (node runs the bin by path here).
    'hold-node-option': { type: 'string', multiple: true, default: ['--max-semi-space-size=8'] },
    // Another tree's hold (e.g. a copy at an earlier commit), to compare side by side.
    'hold-bin': { type: 'string', default: DEFAULT_HOLD_BIN },
    'reference-server': { type: 'string' },
  },
})

if (args['reference-server'] !== undefined) {
  await referenceServer(args['reference-server'])
} else {
  await main(
    Number(args['size-mib']) * MiB,
    Number(args['part-mib']) * MiB,
    Number(args['budget-mib']) * MiB,
    args['hold-node-option'],
    args['hold-bin'],
  )
}

/** The generated blob: a random 1 MiB block, each chunk stamped with its index. */
function* chunks(start: number, end: number, block: Buffer): Generator<Buffer> {
  for (let offset = start; offset < end; offset += CHUNK) {
    const chunk = Buffer.from(block.subarray(0, Math.min(CHUNK, end - offset)))
    chunk.writeUInt32BE(offset / CHUNK, 0)
    yield chunk
  }
}

async function main(
  size: number,
  partSize: number,
  budget: number,
  holdNodeOptions: string[],
  holdBin: string,
): Promise<void> {
  const block = randomBytes(CHUNK)
  const hash = createHash('sha256')
  for (const chunk of chunks(0, size, block)) hash.update(chunk)
  const digest = `sha256:${hash.digest('hex')}`
  console.log(`blob: ${size / MiB} MiB in parts of ${partSize / MiB} MiB, ${digest}`)

  const work = await mkdtemp(join(tmpdir(), 'atcr-bench-'))
  const plc = await startPlc()
  const children: ChildProcess[] = []
  try {
    // The uploader: a did:plc whose key we hold, so tokens are real service-auth JWTs.
    const key = await loadOrCreateKeypair(join(work, 'owner-signing.key'))
    const { did: owner } = await createPlcIdentity({
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey: await loadOrCreateKeypair(join(work, 'owner-rotation.key')),
      signingKey: key,
      handle: 'bench-owner.test',
      serviceEndpoint: 'https://pds.bench.test',
    })

    // Reference: bytes PUT straight into a file.
    const refPort = await freePort()
    const reference = spawn(
      process.execPath,
      [new URL(import.meta.url).pathname, '--reference-server', join(work, 'reference')],
      {
        env: { ...process.env, BENCH_PORT: String(refPort) },
        stdio: ['ignore', 'inherit', 'inherit'],
      },
    )
    children.push(reference)
    await waitForHttp(`http://127.0.0.1:${refPort}/`)
    const refStart = performance.now()
    for (let offset = 0; offset < size; offset += partSize) {
      const end = Math.min(offset + partSize, size)
      const status = await put(
        `http://127.0.0.1:${refPort}/part`,
        {},
        chunks(offset, end, block),
        end - offset,
      )
      if (status.status !== 200) throw new Error(`reference PUT: ${status.status}`)
    }
    const refSeconds = (performance.now() - refStart) / 1000

    // The hold, from its command line, on its own data dir.
    const port = await freePort()
    const hold = spawn(process.execPath, [...holdNodeOptions, holdBin, 'serve'], {
      env: {
        ...process.env,
        ATCR_HOLD_SERVER_HOST: '127.0.0.1',
        ATCR_HOLD_SERVER_PORT: String(port),
        ATCR_HOLD_SERVER_PUBLIC_URL: `http://localhost:${port}`,
        ATCR_HOLD_SERVER_DATA_DIR: join(work, 'hold'),
        ATCR_HOLD_SERVER_MODE: 'dev',
        ATCR_HOLD_IDENTITY_PLC_DIRECTORY_URL: plc.url,
        ATCR_HOLD_REGISTRATION_OWNER_DID: owner,
        ATCR_HOLD_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    children.push(hold)
    const base = `http://127.0.0.1:${port}`
    await waitForHttp(`${base}/xrpc/_health`)
    const holdDid = (await (await fetch(`${base}/.well-known/atproto-did`)).text()).trim()
    const idleRss = memory(hold.pid ?? 0)
    // As it runs: its bin may have restarted node with V8 flags (same process id).
    const commandLine = (await readFile(`/proc/${hold.pid}/cmdline`, 'utf8').catch(() => ''))
      .split('\0')
      .filter((arg) => arg !== '')
      .map((arg) => arg.replace(/^.*\/(node|atcr-hold)$/, '$1'))
      .join(' ')
    const token = (lxm: string) =>
      mintServiceAuthToken({ iss: owner, aud: holdDid, lxm, keypair: key, expiresInSeconds: 600 })
    const call = async (nsid: string, input: unknown) => {
      const response = await fetch(`${base}/xrpc/${nsid}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${await token(nsid)}`,
        },
        body: JSON.stringify(input),
      })
      const body = (await response.json()) as Record<string, unknown>
      if (!response.ok) throw new Error(`${nsid}: ${response.status} ${JSON.stringify(body)}`)
      return body
    }

    // Peak VmRSS per phase, sampled; VmHWM gives the overall peak exactly.
    const phasePeak = { parts: 0, complete: 0 }
    let phase: keyof typeof phasePeak = 'parts'
    const sampler = setInterval(() => {
      const current = phase
      phasePeak[current] = Math.max(phasePeak[current], memory(hold.pid ?? 0).rss)
    }, 50)

    const cpuStart = cpuTotal(hold.pid ?? 0)
    const holdStart = performance.now()
    const { uploadId } = (await call('io.atcr.hold.initiateUpload', { digest })) as {
      uploadId: string
    }
    const parts: { partNumber: number; etag: string }[] = []
    for (let offset = 0, partNumber = 1; offset < size; offset += partSize, partNumber++) {
      const target = (await call('io.atcr.hold.getPartUploadUrl', { uploadId, partNumber })) as {
        url: string
        headers: Record<string, string>
      }
      const end = Math.min(offset + partSize, size)
      // The hold advertises its public URL (localhost); the bench talks to 127.0.0.1.
      const url = new URL(target.url)
      url.hostname = '127.0.0.1'
      const result = await put(
        url.toString(),
        { ...target.headers, authorization: `Bearer ${await token('io.atcr.hold.uploadPart')}` },
        chunks(offset, end, block),
        end - offset,
      )
      if (result.status !== 200)
        throw new Error(`uploadPart ${partNumber}: ${result.status} ${result.body}`)
      parts.push({ partNumber, etag: (JSON.parse(result.body) as { etag: string }).etag })
    }
    const partsSeconds = (performance.now() - holdStart) / 1000
    const cpuParts = cpuTotal(hold.pid ?? 0) - cpuStart
    phase = 'complete'
    await call('io.atcr.hold.completeUpload', { uploadId, digest, parts })
    const totalSeconds = (performance.now() - holdStart) / 1000
    const cpuComplete = cpuTotal(hold.pid ?? 0) - cpuStart - cpuParts
    clearInterval(sampler)
    const final = memory(hold.pid ?? 0)

    const head = await fetch(
      `${base}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(holdDid)}&cid=${digest}`,
      {
        method: 'HEAD',
        headers: { authorization: `Bearer ${await token('com.atproto.sync.getBlob')}` },
      },
    )
    if (head.status !== 200 || head.headers.get('content-length') !== String(size)) {
      throw new Error(`the blob is not readable after the upload: HEAD ${head.status}`)
    }

    const rate = (seconds: number) => size / MiB / seconds
    const peak = Math.max(final.hwm, phasePeak.parts, phasePeak.complete)
    console.log(
      `reference  raw PUT into a file        ${rate(refSeconds).toFixed(0)} MiB/s (${refSeconds.toFixed(1)} s)`,
    )
    console.log(
      `hold       parts through uploadPart    ${rate(partsSeconds).toFixed(0)} MiB/s (${partsSeconds.toFixed(1)} s), ratio ${(refSeconds / partsSeconds).toFixed(2)}`,
    )
    console.log(
      `hold       parts + completeUpload      ${rate(totalSeconds).toFixed(0)} MiB/s (${totalSeconds.toFixed(1)} s), ratio ${(refSeconds / totalSeconds).toFixed(2)}`,
    )
    console.log(
      `hold CPU   ${cpuParts.toFixed(1)} s for the parts, ${cpuComplete.toFixed(1)} s for completeUpload ` +
        '(user + system: steadier than throughput on a busy machine)',
    )
    console.log(
      `hold RSS   idle ${mib(idleRss.rss)} (startup peak ${mib(idleRss.hwm)}), peak ${mib(peak)} (VmHWM), ` +
        `${mib(peak - idleRss.rss)} over idle; budget ${mib(budget)}`,
    )
    console.log(
      `           sampled peak during the parts ${mib(phasePeak.parts)}, during completeUpload ${mib(phasePeak.complete)}`,
    )
    console.log(`hold ran   ${commandLine}`)
    if (peak >= budget) {
      console.error('FAIL: the hold exceeded its memory budget')
      process.exitCode = 1
    } else {
      console.log('OK: peak RSS within budget')
    }
  } finally {
    for (const child of children) {
      child.kill('SIGTERM')
      if (child.exitCode === null) await once(child, 'exit')
    }
    await plc.close()
    await rm(work, { recursive: true, force: true })
  }
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`
}

/** Streams a generated body with a Content-Length, honouring backpressure. */
function put(
  url: string,
  headers: Record<string, string>,
  body: Iterable<Buffer>,
  length: number,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': length },
    })
    req.on('error', reject)
    req.on('response', (res) => {
      const received: Buffer[] = []
      res.on('data', (chunk: Buffer) => received.push(chunk))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(received).toString() }),
      )
      res.on('error', reject)
    })
    const iterator = body[Symbol.iterator]()
    const pump = () => {
      for (;;) {
        const next = iterator.next()
        if (next.done) {
          req.end()
          return
        }
        if (!req.write(next.value)) {
          req.once('drain', pump)
          return
        }
      }
    }
    pump()
  })
}

async function waitForHttp(url: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      const response = await fetch(url)
      await response.arrayBuffer()
      if (response.status < 500) return
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not come up`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** CPU time (user + kernel) a process has used so far, seconds. */
function cpuTotal(pid: number): number {
  const { user, kernel } = cpuSeconds(pid)
  return user + kernel
}

/** Current and peak resident memory of a process, bytes. */
function memory(pid: number): { rss: number; hwm: number } {
  return { rss: statusKiB(pid, 'VmRSS') * 1024, hwm: statusKiB(pid, 'VmHWM') * 1024 }
}

/** The reference: PUT bodies written to numbered files and fdatasync'ed, then 200. */
async function referenceServer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  let count = 0
  const server = createServer((req, res) => {
    if (req.method !== 'PUT') {
      res.writeHead(200).end()
      return
    }
    const file = join(dir, String(++count))
    const out = createWriteStream(file)
    req.pipe(out)
    out.on('finish', async () => {
      const handle = await open(file, 'r+')
      await handle.datasync()
      await handle.close()
      res.writeHead(200).end('{}')
    })
  })
  server.listen(Number(process.env.BENCH_PORT), '127.0.0.1')
  await Promise.race([once(process, 'SIGTERM'), once(process, 'SIGINT')])
  server.close()
}
