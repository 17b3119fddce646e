// Pushes and pulls one image with skopeo through ATCR (the AppView and a hold, each in a
// child process, the hold on the filesystem or on s3rver) and through CNCF distribution
// (`docker-registry` from Debian, filesystem storage) on the same machine, and reports
// the throughput of each and the AppView's peak RSS (one upload part buffered at a time).
//
//   source scripts/env.sh && node bench/registry-push-pull.ts [--size-mib 256] [--part-mib 16]
//
// Needs skopeo; the reference needs `apt-get install docker-registry` (skipped without it).
// The ATCR side runs a real PLC and PDS in this process, the hold and the AppView as child
// processes (their bins, dev mode, temp data dirs); ratios compare to distribution in the
// same run (the machine is shared: absolute numbers vary by 2x between runs).
//
// Results, 256 MiB layer, 16 MiB parts, 2 cores with other work running (one run each):
//
// | target                               | push             | pull             | AppView RSS   |
// |--------------------------------------|------------------|------------------|---------------|
// | CNCF distribution 2.8 (filesystem)   | 143 MiB/s (1.00) | 156 MiB/s (1.00) | -             |
// | ATCR, hold on filesystem (streamed)  | 33 MiB/s (0.23)  | 76 MiB/s (0.49)  | 195 → 293 MiB |
// | ATCR, hold on s3rver (presigned)     | 31 MiB/s (0.22)  | 144 MiB/s (0.93) | 203 → 309 MiB |
//
// Where a push's time goes (in-process timing, quiet machine): the PATCH streams parts to
// the hold at ~100 MiB/s (receiving and sending overlap; without that, ~65 MiB/s), and
// completeUpload takes ~1.4 s for 256 MiB on the filesystem hold (it assembles the parts
// and reads the blob back to verify its digest) and ~6 s on s3rver (assembly, read-back,
// copy). Token requests cost ~0.4 s each (a PDS createSession per /auth/token). The
// AppView's peak grows by about 100 MiB over idle: one 16 MiB part buffer plus V8's lag in
// collecting socket buffers.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
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

const MiB = 1024 * 1024
const APPVIEW_BIN = new URL('../apps/appview/bin/atcr-appview', import.meta.url).pathname

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'part-mib': { type: 'string', default: '16' },
  },
})
const size = Number(args['size-mib']) * MiB
const partSize = Number(args['part-mib']) * MiB

interface Result {
  target: string
  pushSeconds: number
  pullSeconds: number
  appviewPeakMiB?: number
  appviewIdleMiB?: number
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((text) => {
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)
    return match ? Number(match[1]) : 0
  })
}

async function waitFor(url: string, child: ChildProcess, output: () => string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`exited early:\n${output()}`)
    try {
      const response = await fetch(url)
      await response.body?.cancel()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  throw new Error(`${url} never answered:\n${output()}`)
}

function spawnLogged(
  command: string,
  argv: string[],
): { child: ChildProcess; output: () => string } {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-32_768)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  return { child, output: () => output }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
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
  const back = join(work, `pulled-${target}`)
  const pullSeconds = await timed(() =>
    run('skopeo', ['copy', '--src-tls-verify=false', reference, `oci:${back}:bench`]),
  )
  await sameBlobs(layout, back)
  return { pushSeconds, pullSeconds }
}

async function distribution(work: string, layout: string): Promise<Result | null> {
  if (!hasCommand('docker-registry')) {
    console.log('docker-registry not installed (apt-get install docker-registry): no reference')
    return null
  }
  const port = await freePort()
  const config = join(work, 'distribution.yml')
  await writeFile(
    config,
    JSON.stringify({
      version: 0.1,
      log: { level: 'error' },
      storage: { filesystem: { rootdirectory: join(work, 'distribution') } },
      http: { addr: `127.0.0.1:${port}` },
    }),
  )
  const { child, output } = spawnLogged('docker-registry', ['serve', config])
  try {
    await waitFor(`http://127.0.0.1:${port}/v2/`, child, output)
    const times = await pushPull(
      work,
      layout,
      'distribution',
      `docker://127.0.0.1:${port}/bench/app:bench`,
      [],
    )
    return { target: 'CNCF distribution 2.8 (filesystem)', ...times }
  } finally {
    await stop(child)
  }
}

async function atcr(work: string, layout: string, storage: 'filesystem' | 's3'): Promise<Result> {
  const net = await startNetwork()
  const s3 = storage === 's3' ? await startS3() : null
  const alice = await net.pds.createAccount('alice.test')
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
      log: { level: 'error' },
    }),
  )
  const { child, output } = spawnLogged(process.execPath, [
    APPVIEW_BIN,
    'serve',
    '--config',
    config,
  ])
  try {
    await waitFor(`http://127.0.0.1:${port}/v2/`, child, output)
    const idle = await statusKiB(child.pid!, 'VmRSS')
    const name = `${alice.did.replaceAll(':', '-')}/app`
    const times = await pushPull(
      work,
      layout,
      `atcr-${storage}`,
      `docker://127.0.0.1:${port}/${name}:bench`,
      ['--dest-creds', `${alice.did}:${alice.appPassword}`],
    )
    const peak = await statusKiB(child.pid!, 'VmHWM')
    return {
      target: `ATCR, hold on ${storage === 's3' ? 's3rver (presigned URLs)' : 'filesystem (streamed)'}`,
      ...times,
      appviewIdleMiB: idle / 1024,
      appviewPeakMiB: peak / 1024,
    }
  } finally {
    await stop(child)
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
    const results: Result[] = []
    const reference = await distribution(work, layout)
    if (reference) results.push(reference)
    results.push(await atcr(work, layout, 'filesystem'))
    results.push(await atcr(work, layout, 's3'))

    const mibps = (seconds: number) => (size / MiB / seconds).toFixed(0)
    console.log('\n| target | push | pull | AppView RSS idle → peak |')
    console.log('|---|---|---|---|')
    for (const r of results) {
      const ratio = (s: number, ref: number | undefined) =>
        ref === undefined ? '' : ` (${(ref / s).toFixed(2)}×)`
      const rss =
        r.appviewPeakMiB === undefined
          ? '—'
          : `${r.appviewIdleMiB!.toFixed(0)} → ${r.appviewPeakMiB.toFixed(0)} MiB`
      console.log(
        `| ${r.target} | ${mibps(r.pushSeconds)} MiB/s${ratio(r.pushSeconds, reference?.pushSeconds)} | ${mibps(r.pullSeconds)} MiB/s${ratio(r.pullSeconds, reference?.pullSeconds)} | ${rss} |`,
      )
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
}

await main()
