// The local stack behind `./scripts/dev`, all on loopback: a PLC directory and a PDS with a
// demo account (in this process), optionally an S3-compatible server (s3rver, also in this
// process), a hold and the AppView (each its own process, as in production). State lives in
// the data dir (.data/), so a restart keeps identities, images, blobs and the demo account's
// app password.
//
// Supervision: a service that exits is reported and the whole stack stops; a start-up that
// fails stops what it had started. The services are spawned with an IPC channel and stop by
// themselves when it closes, so none outlives this process, however it ends.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { delimiter, dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { startPds, startPlc, startS3, writeOciImage } from '@atcr/testkit'
import { AtpAgent } from '@atproto/api'

const root = join(import.meta.dirname, '..')
const DEMO_HANDLE = 'sailor.test'
const DEMO_PASSWORD = 'sailor-password'
const START_TIMEOUT_MS = 120_000

/** The stack's ports: flag, environment variable and default of each. */
const PORTS = {
  plc: { flag: 'plc-port', env: 'ATCR_DEV_PLC_PORT', default: 2582, what: 'PLC directory' },
  pds: { flag: 'pds-port', env: 'ATCR_DEV_PDS_PORT', default: 2583, what: 'PDS' },
  hold: { flag: 'hold-port', env: 'ATCR_DEV_HOLD_PORT', default: 2584, what: 'hold' },
  s3: { flag: 's3-port', env: 'ATCR_DEV_S3_PORT', default: 2585, what: 'S3 server (--s3)' },
  registry: {
    flag: 'registry-port',
    env: 'ATCR_DEV_REGISTRY_PORT',
    default: 5000,
    what: 'registry (AppView)',
  },
} as const
type PortName = keyof typeof PORTS

const USAGE = `Usage: ./scripts/dev [options]
Starts a local ATCR registry on loopback. Every option also reads an environment variable.
  --data-dir DIR       state kept across restarts (ATCR_DEV_DATA_DIR, default .data)
  --s3                 keep the hold's blobs on an embedded S3-compatible server (s3rver)
                       instead of the filesystem (ATCR_DEV_S3=1)
${Object.values(PORTS)
  .map((p) => `${`  --${p.flag} N`.padEnd(23)}${p.what} (${p.env}, default ${p.default})`)
  .join('\n')}
  -h, --help           this text`

class UsageError extends Error {}

interface Options {
  dataDir: string
  s3: boolean
  ports: Record<PortName, number>
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      s3: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(Object.values(PORTS).map((p) => [p.flag, { type: 'string' }])),
    },
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const ports = {} as Record<PortName, number>
  for (const [name, p] of Object.entries(PORTS) as [PortName, (typeof PORTS)[PortName]][]) {
    const given = (values as Record<string, unknown>)[p.flag] as string | undefined
    const chosen = given ?? process.env[p.env]
    const port = chosen === undefined ? p.default : Number(chosen)
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new UsageError(`--${p.flag} (${p.env}): expected a port number, got ${chosen}`)
    }
    ports[name] = port
  }
  return {
    dataDir: resolve(values['data-dir'] ?? process.env.ATCR_DEV_DATA_DIR ?? join(root, '.data')),
    s3: values.s3 ?? ['1', 'true'].includes(process.env.ATCR_DEV_S3 ?? ''),
    ports,
  }
}

/** Every port the stack needs, checked before anything starts: one message for all taken. */
async function checkPortsFree(options: Options): Promise<void> {
  const taken: string[] = []
  for (const [name, p] of Object.entries(PORTS) as [PortName, (typeof PORTS)[PortName]][]) {
    if (name === 's3' && !options.s3) continue
    const port = options.ports[name]
    if (!(await portIsFree(port))) {
      taken.push(`port ${port} (${p.what}) is in use: stop what holds it, or choose another
  with --${p.flag} N or ${p.env}=N`)
    }
  }
  if (taken.length > 0) throw new UsageError(taken.join('\n'))
}

async function portIsFree(port: number): Promise<boolean> {
  const probe = createServer()
  probe.listen(port, '127.0.0.1')
  try {
    await once(probe, 'listening')
  } catch {
    return false
  }
  probe.close()
  await once(probe, 'close')
  return true
}

/** The status of GET `url`, or 0 when nothing answers (node:http: any port, unlike fetch). */
function statusOf(url: string): Promise<number> {
  return new Promise((done) => {
    const req = request(url, { timeout: 5000 }, (res) => {
      res.resume()
      done(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => done(0))
    req.end()
  })
}

/** The stack: what has started, stopped in reverse order, once. */
class Stack {
  private readonly stops: { name: string; stop: () => Promise<void> }[] = []
  private stopped: Promise<void> | undefined

  get stopping(): boolean {
    return this.stopped !== undefined
  }

  started(name: string, stop: () => Promise<void>): void {
    this.stops.push({ name, stop })
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      for (const { name, stop } of this.stops.reverse()) {
        await stop().catch((err: unknown) => console.error(`stopping ${name}: ${err}`))
      }
    })()
    return this.stopped
  }

  /** Stops everything and exits with status 1; `reason` is printed unless already stopping. */
  async fail(reason: string): Promise<never> {
    if (!this.stopping) console.error(`${reason}\nstopping the stack`)
    await this.stop()
    process.exit(1)
  }
}

const stack = new Stack()
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, async () => {
    await stack.stop()
    process.exit(0)
  })
}

let options: Options
try {
  options = parseOptions()
  await checkPortsFree(options)
} catch (error) {
  console.error(`./scripts/dev: ${(error as Error).message}`)
  if (!(error instanceof UsageError)) throw error
  console.error('See ./scripts/dev --help.')
  process.exit(2)
}
try {
  await main(options)
} catch (error) {
  await stack.fail(`./scripts/dev: start-up failed: ${(error as Error).stack ?? error}`)
}

async function main({ dataDir, ports, s3: useS3 }: Options): Promise<void> {
  const logs = join(dataDir, 'logs')
  await mkdir(logs, { recursive: true })
  const plc = await startPlc({ opLog: join(dataDir, 'plc-ops.jsonl'), port: ports.plc })
  stack.started('PLC directory', () => plc.close())
  const pds = await startPds({ plcUrl: plc.url, dataDir: join(dataDir, 'pds'), port: ports.pds })
  stack.started('PDS', () => pds.close())
  const demo = await ensureDemoAccount(pds.url, join(dataDir, 'demo-account.json'))
  // The io.atcr.authFullApp permission set, so that OAuth sign-in asks for include: scopes.
  await pds.publishLexicons([
    JSON.parse(await readFile(join(root, 'lexicons/io/atcr/authFullApp.json'), 'utf8')),
  ])

  const holdUrl = `http://localhost:${ports.hold}`
  const holdDid = `did:web:localhost%3A${ports.hold}`
  const holdEnv: Record<string, string> = {
    ATCR_HOLD_SERVER_HOST: '127.0.0.1',
    ATCR_HOLD_SERVER_PORT: String(ports.hold),
    ATCR_HOLD_SERVER_PUBLIC_URL: holdUrl,
    // Blobs on S3 and blobs on disk are different holds: each keeps its own data dir.
    ATCR_HOLD_SERVER_DATA_DIR: join(dataDir, useS3 ? 'hold-s3' : 'hold'),
    ATCR_HOLD_SERVER_MODE: 'dev',
    ATCR_HOLD_IDENTITY_PLC_DIRECTORY_URL: plc.url,
    ATCR_HOLD_REGISTRATION_OWNER_DID: demo.did,
    ATCR_HOLD_REGISTRATION_PUBLIC: 'true',
    ATCR_HOLD_REGISTRATION_ALLOW_ALL_CREW: 'true',
  }
  let storage = `filesystem, ${join(dataDir, 'hold', 'blobs')}`
  if (useS3) {
    const s3 = await startS3('atcr', { directory: join(dataDir, 's3'), port: ports.s3 })
    stack.started('S3 server', () => s3.close())
    Object.assign(holdEnv, {
      ATCR_HOLD_STORAGE_DRIVER: 's3',
      ATCR_HOLD_STORAGE_S3_ENDPOINT: s3.endpoint,
      ATCR_HOLD_STORAGE_S3_REGION: s3.region,
      ATCR_HOLD_STORAGE_S3_BUCKET: s3.bucket,
      ATCR_HOLD_STORAGE_S3_ACCESS_KEY_ID: s3.accessKeyId,
      ATCR_HOLD_STORAGE_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    })
    storage = `S3 (s3rver) at ${s3.endpoint}, bucket ${s3.bucket}, objects in ${join(dataDir, 's3')}`
  }
  const hold = startService('hold', 'apps/hold/bin/atcr-hold', holdEnv, logs)
  await waitFor(hold, `http://127.0.0.1:${ports.hold}/xrpc/_health`, (status) => status === 200)

  const registry = `127.0.0.1:${ports.registry}`
  const appview = startService(
    'appview',
    'apps/appview/bin/atcr-appview',
    {
      ATCR_APPVIEW_SERVER_HOST: '127.0.0.1',
      ATCR_APPVIEW_SERVER_PORT: String(ports.registry),
      ATCR_APPVIEW_SERVER_BASE_URL: `http://${registry}`,
      ATCR_APPVIEW_SERVER_DATA_DIR: join(dataDir, 'appview'),
      ATCR_APPVIEW_SERVER_MODE: 'dev',
      ATCR_APPVIEW_IDENTITY_PLC_DIRECTORY_URL: plc.url,
      ATCR_APPVIEW_IDENTITY_HANDLE_RESOLVER_URL: pds.url,
      ATCR_APPVIEW_REGISTRY_DEFAULT_HOLD_DID: holdDid,
      ATCR_APPVIEW_OAUTH_PERMISSION_SET: 'true',
    },
    logs,
  )
  await waitFor(appview, `http://${registry}/v2/`, (status) => status === 401)

  const image = `${registry}/${DEMO_HANDLE}/hello:latest`
  const demoLayout = join(dataDir, 'demo-image')
  await writeOciImage(demoLayout, {
    tag: 'hello',
    layers: [{ files: [{ path: 'hello.txt', content: 'Hello from ATCR!\n' }] }],
  })
  const creds = `${DEMO_HANDLE}:${demo.appPassword}`
  console.log(`
ATCR local stack is up (loopback only; state in ${dataDir}, logs in ${logs}):
  registry (AppView)  http://${registry}
  web UI              http://${registry}/   (sign in with ${DEMO_HANDLE} / ${DEMO_PASSWORD})
  hold                ${holdUrl}  (${holdDid}; blobs: ${storage})
  PDS                 ${pds.url}
  PLC directory       ${plc.url}
  demo account        ${DEMO_HANDLE}  ${demo.did}
  app password        ${demo.appPassword}   (the same at every start)

Push and pull (the image name is <registry>/<handle or did-plc-...>/<repository>):
  skopeo copy --dest-tls-verify=false --dest-creds '${creds}' \\
    oci:${demoLayout}:hello docker://${image}
  skopeo inspect --tls-verify=false docker://${image}

  podman login --tls-verify=false -u ${DEMO_HANDLE} -p '${demo.appPassword}' ${registry}
  podman push --tls-verify=false <local image> ${image}
  podman pull --tls-verify=false ${image}

  # docker needs a running Docker engine (the docker CLI alone is not enough):
  docker login -u ${DEMO_HANDLE} -p '${demo.appPassword}' ${registry}
  docker push ${image}    # docker treats 127.0.0.1 registries as plain HTTP
  docker pull ${image}

Sign in without an app password (device login in the web UI), with the credential helper:
  ./scripts/install-cli                     # puts atcr and docker-credential-atcr on PATH
  atcr login ${registry}               # approve the code at http://${registry}/device
  atcr configure-docker ${registry}    # docker, podman, skopeo and buildah then use it
Press Ctrl-C to stop.`)
}

/**
 * Starts one of the project's services as its own process (its bin, so its shebang's V8
 * flags apply, with this Node first on PATH), logging to `logs`. Its own process group, so a
 * Ctrl-C reaches only this process, which stops the services in order.
 */
function startService(
  name: string,
  bin: string,
  env: Record<string, string>,
  logs: string,
): ChildProcess {
  const logFile = join(logs, `${name}.log`)
  const log = createWriteStream(logFile, { flags: 'a' })
  const child = spawn(join(root, bin), ['serve'], {
    env: {
      ...process.env,
      PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true,
  })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  const exited = once(child, 'exit')
  child.on('exit', (code, signal) => {
    if (stack.stopping) return
    void stack.fail(`${name} exited (${signal ?? `status ${code}`}); see ${logFile}`)
  })
  stack.started(name, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await exited
    clearTimeout(timer)
  })
  return child
}

/** Polls `url` until `ready(status)`; fails at once when the service exits first. */
async function waitFor(child: ChildProcess, url: string, ready: (status: number) => boolean) {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break
    if (ready(await statusOf(url))) return
    await sleep(200)
  }
  throw new Error(`${url} did not answer as expected`)
}

/**
 * The demo account (created on first start) and its app password, kept in the data dir: a
 * restart reuses it while the PDS still accepts it, rather than minting another each time.
 */
async function ensureDemoAccount(
  service: string,
  file: string,
): Promise<{ did: string; appPassword: string }> {
  const stored = await readFile(file, 'utf8').then(
    (text) => JSON.parse(text) as { did: string; appPassword: string },
    () => null,
  )
  if (stored) {
    const agent = new AtpAgent({ service })
    const accepted = await agent
      .login({ identifier: DEMO_HANDLE, password: stored.appPassword })
      .then(
        () => true,
        () => false,
      )
    if (accepted && agent.session?.did === stored.did) return stored
  }
  const agent = new AtpAgent({ service })
  const existing = await agent
    .login({ identifier: DEMO_HANDLE, password: DEMO_PASSWORD })
    .catch(() => null)
  if (!existing) {
    await agent.createAccount({
      handle: DEMO_HANDLE,
      email: 'sailor@example.com',
      password: DEMO_PASSWORD,
    })
  }
  const created = await agent.com.atproto.server.createAppPassword({
    name: `atcr-dev-${new Date().toISOString()}`,
  })
  const demo = { did: agent.session!.did, appPassword: created.data.password }
  await writeFile(file, `${JSON.stringify(demo, null, 2)}\n`, { mode: 0o600 })
  return demo
}
