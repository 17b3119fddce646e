// ./scripts/dev as a user runs it, on free ports and a temporary data dir: a taken port is
// refused up front, a service that dies stops the whole stack, the stack's own death takes
// its services with it, the demo app password survives restarts, and --s3 serves too.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer, type Server } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { freePort, LOOPBACK, makeTempDir, removeTempDir } from '@atcr/testkit'

const DEV = new URL('./dev', import.meta.url).pathname
const BANNER_END = 'Press Ctrl-C to stop.'

interface Dev {
  child: ChildProcess
  output(): string
  exited: Promise<[number | null, NodeJS.Signals | null]>
}

function startDev(args: string[]): Dev {
  const child = spawn(DEV, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  return { child, output: () => output, exited }
}

/** Resolves when the banner is printed; rejects with the output when the stack exits first. */
async function untilUp(dev: Dev): Promise<void> {
  const deadline = Date.now() + 240_000
  while (!dev.output().includes(BANNER_END)) {
    if (dev.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the stack did not come up:\n${dev.output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

/** The services the stack runs as processes (Linux: /proc). */
async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')
  return text.trim().split(/\s+/).filter(Boolean).map(Number)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function untilGone(pids: number[]): Promise<void> {
  const deadline = Date.now() + 60_000
  while (pids.some(alive) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  assert.deepEqual(pids.filter(alive), [], 'processes outlived the stack')
}

async function portIsFree(port: number): Promise<boolean> {
  const probe = createServer().listen(port, LOOPBACK)
  try {
    await once(probe, 'listening')
  } catch {
    return false
  }
  probe.close()
  await once(probe, 'close')
  return true
}

function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
      .on('error', reject)
      .end()
  })
}

const appPasswordIn = (output: string) => /app password\s+(\S+)/.exec(output)?.[1]

describe('./scripts/dev', () => {
  let dataDir: string
  const ports: Record<string, number> = {}
  let args: string[]

  before(async () => {
    dataDir = await makeTempDir('atcr-dev-')
    for (const name of ['plc', 'pds', 'hold', 's3']) ports[name] = await freePort()
    // 6000 is one of the ports fetch refuses: the stack's readiness checks must not care.
    ports.registry = (await portIsFree(6000)) ? 6000 : await freePort()
    args = [
      '--data-dir',
      dataDir,
      ...['plc', 'pds', 'hold', 'registry'].flatMap((n) => [`--${n}-port`, String(ports[n])]),
    ]
  })
  after(() => removeTempDir(dataDir))

  async function assertPortsFree(names: string[]) {
    for (const name of names) assert.ok(await portIsFree(ports[name]!), `${name} port still taken`)
  }

  it('refuses a taken port by name and flag, and starts nothing', async () => {
    const blocker: Server = createServer().listen(ports.hold, LOOPBACK)
    await once(blocker, 'listening')
    try {
      const dev = startDev(args)
      const [code] = await dev.exited
      assert.equal(code, 2)
      assert.match(dev.output(), new RegExp(`port ${ports.hold} \\(hold\\) is in use`))
      assert.match(dev.output(), /--hold-port N or ATCR_DEV_HOLD_PORT=N/)
      assert.doesNotMatch(dev.output(), /EADDRINUSE/)
    } finally {
      blocker.close()
    }
    await assertPortsFree(['plc', 'pds', 'registry'])
  })

  let appPassword: string | undefined
  it('serves, and stops whole when a service dies', async () => {
    const dev = startDev(args)
    await untilUp(dev)
    appPassword = appPasswordIn(dev.output())
    assert.ok(appPassword)
    const registry = `http://${LOOPBACK}:${ports.registry}`
    assert.match(dev.output(), new RegExp(`web UI\\s+${registry}/`))
    assert.match(dev.output(), /docker needs a running Docker engine/)
    const basic = Buffer.from(`sailor.test:${appPassword}`).toString('base64')
    const scope = 'repository:sailor.test/hello:pull,push'
    const tokenUrl = `${registry}/auth/token?service=${LOOPBACK}:${ports.registry}&scope=${scope}`
    assert.equal(await get(tokenUrl, { authorization: `Basic ${basic}` }), 200)

    const services = await childrenOf(dev.child.pid!)
    assert.equal(services.length, 2)
    process.kill(services[0]!, 'SIGKILL') // the hold, started first
    const [code] = await dev.exited
    assert.equal(code, 1)
    assert.match(dev.output(), /hold exited \(SIGKILL\)/)
    await untilGone(services)
    await assertPortsFree(['plc', 'pds', 'hold', 'registry'])
  })

  it('reuses the app password, and takes its services along when killed', async () => {
    const dev = startDev(args)
    await untilUp(dev)
    assert.equal(appPasswordIn(dev.output()), appPassword)
    const services = await childrenOf(dev.child.pid!)
    dev.child.kill('SIGKILL')
    await dev.exited
    await untilGone(services)
    await assertPortsFree(['hold', 'registry'])
  })

  it('--s3 runs the hold on the embedded S3 server; Ctrl-C stops everything', async () => {
    const dev = startDev([...args, '--s3', '--s3-port', String(ports.s3)])
    await untilUp(dev)
    assert.match(
      dev.output(),
      new RegExp(`blobs: S3 \\(s3rver\\) at http://${LOOPBACK}:${ports.s3}`),
    )
    assert.equal(await get(`http://${LOOPBACK}:${ports.hold}/xrpc/_health`), 200)
    const services = await childrenOf(dev.child.pid!)
    dev.child.kill('SIGINT')
    const [code] = await dev.exited
    assert.equal(code, 0)
    await untilGone(services)
    await assertPortsFree(['plc', 'pds', 'hold', 'registry', 's3'])
  })
})
