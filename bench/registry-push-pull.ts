// Pushes and pulls one image with skopeo through ATCR (the AppView and a hold, each in a
// child process, the hold on the filesystem or on s3rver) and through CNCF distribution
// (`docker-registry` from Debian, filesystem storage) on the same machine, and reports
// the throughput of each, the AppView's RSS at idle and at its peak (one upload part
// buffered at a time), and how many PDS sessions (createSession) the ATCR side made.
// As users do, ATCR gets a `skopeo login` first (timed apart), then the push.
//
//   source scripts/env.sh && node bench/registry-push-pull.ts [--size-mib 256] [--part-mib 16]
//     [--runs N]                       repeat everything, one table per run
//     [--only distribution,filesystem,s3]
//     [--appview-bin PATH]...          AppView bin(s) to compare, e.g. a copy of the tree at
//                                      an earlier commit; each gets its own rows
//     [--appview-node-option FLAG]...  node flags for the AppView (e.g. --trace-gc)
//     [--trace]                        the AppView's requests with their durations (and, with
//                                      --trace-gc, its collections)
//
// Needs skopeo; the reference needs `apt-get install docker-registry` (skipped without it).
// The ATCR side runs a real PLC and PDS in this process, the hold and the AppView as child
// processes (their bins, dev mode, temp data dirs); ratios compare to distribution in the
// same run (the machine is shared: absolute numbers vary by 2x between runs).
//
// Results, 256 MiB layer, 16 MiB parts, 2 cores with other work running; "before" is the
// AppView as of commit f5d0bb5, "after" this one, run side by side (--appview-bin): means
// of six runs (filesystem) and three (s3rver), ratios to distribution in the same run:
//
// | target                        | login | push           | pull            | AppView RSS   |
// |-------------------------------|-------|----------------|-----------------|---------------|
// | distribution 2.8 (filesystem) | -     | 103-199 MiB/s  | 135-190 MiB/s   | -             |
// | ATCR filesystem hold, before  | 0.6 s | 59 MiB/s, 0.44 | 83 MiB/s, 0.53  | 199 → 294 MiB |
// | ATCR filesystem hold, after   | 1.1 s | 72 MiB/s, 0.54 | 99 MiB/s, 0.63  | 139 → 216 MiB |
// | ATCR s3rver hold, before      | 0.7 s | 25 MiB/s, 0.17 | (presigned)     | 198 → 275 MiB |
// | ATCR s3rver hold, after       | 1.0 s | 32 MiB/s, 0.22 | (presigned)     | 141 → 207 MiB |
//
// (Pulls from the s3rver hold are 307 redirects to presigned URLs: the AppView carries no
// bytes there, so their spread, 0.55-0.99, is the machine's.)
//
// Where a push's time goes (--trace): the token request of the push no longer creates a
// PDS session (the login's is remembered: createSession 2 → 1, ~0.5 s saved per push);
// the PATCH streams parts to the hold at 75-140 MiB/s depending on the machine's load
// (receiving and sending overlap within a part; at each part boundary the AppView waits
// ~15-30 ms for the hold's ETag and ~10 ms for the next part's URL: receiving the next
// part into a second buffer meanwhile gained less than the noise, for 16 MiB more per
// upload, so it was left out); completeUpload takes
// 0.6-1.4 s for 256 MiB on the filesystem hold (the hold assembles the parts and reads the
// blob back to verify it). The AppView itself spends most of its CPU on sha256 (needed to
// complete uploads finished with a sha512 digest) and on garbage collection of socket
// buffers; a pull passes the hold's body to fastify as the web stream fetch gives (no Node
// stream wrapped around it), read again each time the client drains. The login takes ~0.4 s longer on a fresh AppView: @atproto/api is loaded on the
// first sign-in, not at start. Idle RSS: @atproto/api not loaded (−35 MiB) and 2 MiB
// semi-spaces (−20 MiB, set by the bin); the peak stays ~85 MiB over idle (the part buffer
// plus V8's lag in collecting socket buffers).
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import {
  freePort,
  hasCommand,
  run,
  startHoldProcess,
  startNetwork,
  startS3,
  writeOciImage,
} from '@atcr/testkit'
import { startDistribution } from './lib/distribution.ts'
import { spawnLogged, statusKiB, stopChild, waitForUrl } from './lib/processes.ts'

const MiB = 1024 * 1024
const APPVIEW_BIN = new URL('../apps/appview/bin/atcr-appview', import.meta.url).pathname

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'part-mib': { type: 'string', default: '16' },
    runs: { type: 'string', default: '1' },
    only: { type: 'string', default: 'distribution,filesystem,s3' },
    trace: { type: 'boolean', default: false },
    'appview-bin': { type: 'string', multiple: true },
    'appview-node-option': { type: 'string', multiple: true },
  },
})
const runs = Number(args.runs)
const only = new Set(args.only.split(','))
// Another AppView to compare (e.g. a copy of the tree at an earlier commit), each its own rows.
const appviewBins = args['appview-bin'] ?? [APPVIEW_BIN]
const size = Number(args['size-mib']) * MiB
const partSize = Number(args['part-mib']) * MiB

interface Result {
  target: string
  pushSeconds: number
  pullSeconds: number
  appviewPeakMiB?: number
  appviewIdleMiB?: number
  /** com.atproto.server.createSession calls the PDS answered for the login, push and pull. */
  createSessions?: number
  loginSeconds?: number
}

interface LogLine {
  msg?: string
  time?: string
  reqId?: string
  responseTime?: number
  req?: { method?: string; url?: string }
  res?: { statusCode?: number }
}

/** The AppView's requests (fastify's info logs): start, duration, status, method, path. */
function printTimeline(title: string, lines: string[]): void {
  const started = new Map<string, { time: number; method: string; url: string }>()
  const rows: string[] = []
  let origin: number | undefined
  for (const line of lines) {
    let entry: LogLine
    try {
      entry = JSON.parse(line) as LogLine
    } catch {
      continue
    }
    if (entry.reqId === undefined || entry.time === undefined) continue
    const time = Date.parse(entry.time)
    if (entry.msg === 'incoming request') {
      origin ??= time
      started.set(entry.reqId, {
        time,
        method: entry.req?.method ?? '?',
        url: (entry.req?.url ?? '?').replace(/did-plc-[a-z0-9]+/, '<did>').replace(/\?.*/, ''),
      })
    } else if (entry.msg === 'request completed') {
      const start = started.get(entry.reqId)
      if (!start || origin === undefined) continue
      const at = ((start.time - origin) / 1000).toFixed(2).padStart(6)
      const took = ((entry.responseTime ?? 0) / 1000).toFixed(3).padStart(7)
      rows.push(`${at}s +${took}s ${entry.res?.statusCode ?? '?'} ${start.method} ${start.url}`)
    }
  }
  console.log(`\n${title}: AppView requests (start, duration, status)\n${rows.join('\n')}`)
  // With --appview-node-option=--trace-gc: V8's collections, by kind.
  const gc = new Map<string, { count: number; ms: number }>()
  for (const line of lines) {
    const match =
      /: (Scavenge|Mark-Compact|Minor Mark-Sweep)\b.*?, ([\d.]+) \/ [\d.]+ ms.*?;\s*(.*)$/.exec(
        line,
      )
    if (!match) continue
    const key = `${match[1]} (${match[3]!.trim()})`
    const kind = gc.get(key) ?? { count: 0, ms: 0 }
    kind.count++
    kind.ms += Number(match[2])
    gc.set(key, kind)
  }
  for (const [kind, { count, ms }] of gc) console.log(`GC ${kind}: ${count}×, ${ms.toFixed(0)} ms`)
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  await action()
  return (performance.now() - start) / 1000
}

async function sameBlobs(a: string, b: string): Promise<void> {
  const list = async (dir: string) => (await readdir(join(dir, 'blobs', 'sha256'))).sort().join()
  if ((await list(a)) !== (await list(b))) throw new Error(`pulled blobs differ: ${a} ${b}`)
}

async function pushPull(
  work: string,
  layout: string,
  target: string,
  reference: string,
  creds: string[],
): Promise<{ pushSeconds: number; pullSeconds: number }> {
  const pushSeconds = await timed(() =>
    run('skopeo', ['copy', '--dest-tls-verify=false', ...creds, `oci:${layout}:bench`, reference]),
  )
  // Fresh directories every time: skopeo skips blobs a layout already has.
  const back = await mkdtemp(join(work, `pulled-${target}-`))
  const pullSeconds = await timed(() =>
    run('skopeo', ['copy', '--src-tls-verify=false', reference, `oci:${back}:bench`]),
  )
  await sameBlobs(layout, back)
  await rm(back, { recursive: true, force: true })
  return { pushSeconds, pullSeconds }
}

async function distribution(work: string, layout: string): Promise<Result | null> {
  if (!hasCommand('docker-registry')) {
    console.log('docker-registry not installed (apt-get install docker-registry): no reference')
    return null
  }
  const registry = await startDistribution(work)
  try {
    const times = await pushPull(
      work,
      layout,
      'distribution',
      `docker://${registry.host}/bench/app:bench`,
      [],
    )
    return { target: 'CNCF distribution 2.8 (filesystem)', ...times }
  } finally {
    await registry.close()
  }
}

async function atcr(
  work: string,
  layout: string,
  storage: 'filesystem' | 's3',
  bin: string,
): Promise<Result> {
  const net = await startNetwork()
  const s3 = storage === 's3' ? await startS3() : null
  const alice = await net.pds.createAccount('alice.test')
  let createSessions = 0
  net.pds.pds.server?.on('request', (request: { url?: string }) => {
    if (request.url?.startsWith('/xrpc/com.atproto.server.createSession')) createSessions++
  })
  const hold = await startHoldProcess({
    plcUrl: net.plc.url,
    ownerDid: alice.did,
    storage: s3 ? { s3 } : 'filesystem',
    logLevel: 'error',
  })
  const port = await freePort()
  const dataDir = await mkdtemp(join(work, `appview-${storage}-`))
  const config = join(dataDir, 'appview.yaml')
  await writeFile(
    config,
    JSON.stringify({
      server: {
        base_url: `http://127.0.0.1:${port}`,
        host: '127.0.0.1',
        port,
        data_dir: dataDir,
        mode: 'dev',
      },
      identity: { plc_directory_url: net.plc.url },
      registry: { default_hold_did: hold.did, upload_part_size: partSize },
      log: { level: args.trace ? 'info' : 'error' },
    }),
  )
  const lines: string[] = []
  const { child, output } = spawnLogged(
    process.execPath,
    [...(args['appview-node-option'] ?? []), bin, 'serve', '--config', config],
    args.trace ? (line) => lines.push(line) : undefined,
  )
  try {
    await waitForUrl(`http://127.0.0.1:${port}/v2/`, child, output)
    const idle = statusKiB(child.pid!, 'VmRSS')
    const name = `${alice.did.replaceAll(':', '-')}/app`
    // As users do: `docker login` (here skopeo's) first, then the push asks for its tokens.
    const loginSeconds = await timed(() =>
      run('skopeo', [
        'login',
        '--tls-verify=false',
        '--authfile',
        join(dataDir, 'auth.json'),
        '-u',
        alice.did,
        '-p',
        alice.appPassword,
        `127.0.0.1:${port}`,
      ]),
    )
    const times = await pushPull(
      work,
      layout,
      `atcr-${storage}`,
      `docker://127.0.0.1:${port}/${name}:bench`,
      ['--dest-creds', `${alice.did}:${alice.appPassword}`],
    )
    const peak = statusKiB(child.pid!, 'VmHWM')
    if (args.trace) printTimeline(`ATCR, hold on ${storage}`, lines)
    const which = bin === APPVIEW_BIN ? '' : ` [${bin}]`
    return {
      createSessions,
      loginSeconds,
      target: `ATCR, hold on ${storage === 's3' ? 's3rver (presigned URLs)' : 'filesystem (streamed)'}${which}`,
      ...times,
      appviewIdleMiB: idle / 1024,
      appviewPeakMiB: peak / 1024,
    }
  } finally {
    await stopChild(child)
    await hold.close()
    await s3?.close()
    await net.close()
  }
}

async function main(): Promise<void> {
  for (const command of ['skopeo']) {
    if (!hasCommand(command)) throw new Error(`${command} is needed (apt-get install ${command})`)
  }
  const work = await mkdtemp(join(tmpdir(), 'atcr-bench-registry-'))
  try {
    const layout = join(work, 'layout')
    await writeOciImage(layout, {
      tag: 'bench',
      layers: [
        { files: [{ path: 'etc/motd', content: 'bench\n' }] },
        { randomBytes: size, seed: 'bench' },
      ],
    })
    console.log(
      `image: one ${size / MiB} MiB layer (random, stored gzip level 0); parts of ${partSize / MiB} MiB`,
    )
    for (let run = 1; run <= runs; run++) {
      const results: Result[] = []
      const reference = only.has('distribution') ? await distribution(work, layout) : null
      if (reference) results.push(reference)
      for (const bin of appviewBins) {
        if (only.has('filesystem')) results.push(await atcr(work, layout, 'filesystem', bin))
        if (only.has('s3')) results.push(await atcr(work, layout, 's3', bin))
      }
      printTable(runs > 1 ? `run ${run} of ${runs}` : '', results, reference)
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

function printTable(title: string, results: Result[], reference: Result | null): void {
  const mibps = (seconds: number) => (size / MiB / seconds).toFixed(0)
  if (title) console.log(`\n${title}`)
  console.log('\n| target | login | push | pull | AppView RSS idle → peak | createSession calls |')
  console.log('|---|---|---|---|---|---|')
  for (const r of results) {
    const ratio = (s: number, ref: number | undefined) =>
      ref === undefined ? '' : ` (${(ref / s).toFixed(2)}×)`
    const rss =
      r.appviewPeakMiB === undefined
        ? '—'
        : `${r.appviewIdleMiB!.toFixed(0)} → ${r.appviewPeakMiB.toFixed(0)} MiB`
    console.log(
      `| ${r.target} | ${r.loginSeconds === undefined ? '—' : `${r.loginSeconds.toFixed(2)} s`} | ${mibps(r.pushSeconds)} MiB/s${ratio(r.pushSeconds, reference?.pushSeconds)} | ${mibps(r.pullSeconds)} MiB/s${ratio(r.pullSeconds, reference?.pullSeconds)} | ${rss} | ${r.createSessions ?? '—'} |`,
    )
  }
}

await main()
