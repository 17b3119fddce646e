// The local stack behind `./scripts/dev`, all on loopback: a PLC directory and a PDS with a
// demo account (in this process), a hold on the filesystem driver and the AppView (each its
// own process, as in production). State lives in .data/, so a restart keeps identities,
// images and blobs.
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startPds, startPlc, writeOciImage } from '@atcr/testkit'
import { AtpAgent } from '@atproto/api'

const root = join(import.meta.dirname, '..')
const dataDir = join(root, '.data')
const PLC_PORT = 2582
const PDS_PORT = 2583
const HOLD_PORT = 2584
const REGISTRY_PORT = 5000
const DEMO_HANDLE = 'sailor.test'
const DEMO_PASSWORD = 'sailor-password'

await mkdir(join(dataDir, 'logs'), { recursive: true })
const plc = await startPlc({ opLog: join(dataDir, 'plc-ops.jsonl'), port: PLC_PORT })
const pds = await startPds({ plcUrl: plc.url, dataDir: join(dataDir, 'pds'), port: PDS_PORT })
const demo = await ensureDemoAccount()
// The io.atcr.authFullApp permission set, so that OAuth sign-in asks for include: scopes.
await pds.publishLexicons([
  JSON.parse(await readFile(join(root, 'lexicons/io/atcr/authFullApp.json'), 'utf8')),
])

const holdUrl = `http://localhost:${HOLD_PORT}`
const holdDid = `did:web:localhost%3A${HOLD_PORT}`
const registry = `127.0.0.1:${REGISTRY_PORT}`
const children: ChildProcess[] = []

children.push(
  startService('hold', 'apps/hold/bin/atcr-hold', {
    ATCR_HOLD_SERVER_HOST: '127.0.0.1',
    ATCR_HOLD_SERVER_PORT: String(HOLD_PORT),
    ATCR_HOLD_SERVER_PUBLIC_URL: holdUrl,
    ATCR_HOLD_SERVER_DATA_DIR: join(dataDir, 'hold'),
    ATCR_HOLD_SERVER_MODE: 'dev',
    ATCR_HOLD_IDENTITY_PLC_DIRECTORY_URL: plc.url,
    ATCR_HOLD_REGISTRATION_OWNER_DID: demo.did,
    ATCR_HOLD_REGISTRATION_PUBLIC: 'true',
    ATCR_HOLD_REGISTRATION_ALLOW_ALL_CREW: 'true',
  }),
)
await waitFor(`${holdUrl}/xrpc/_health`, (status) => status === 200, 'hold')

children.push(
  startService('appview', 'apps/appview/bin/atcr-appview', {
    ATCR_APPVIEW_SERVER_HOST: '127.0.0.1',
    ATCR_APPVIEW_SERVER_PORT: String(REGISTRY_PORT),
    ATCR_APPVIEW_SERVER_BASE_URL: `http://${registry}`,
    ATCR_APPVIEW_SERVER_DATA_DIR: join(dataDir, 'appview'),
    ATCR_APPVIEW_SERVER_MODE: 'dev',
    ATCR_APPVIEW_IDENTITY_PLC_DIRECTORY_URL: plc.url,
    ATCR_APPVIEW_IDENTITY_HANDLE_RESOLVER_URL: pds.url,
    ATCR_APPVIEW_REGISTRY_DEFAULT_HOLD_DID: holdDid,
    ATCR_APPVIEW_OAUTH_PERMISSION_SET: 'true',
  }),
)
await waitFor(`http://${registry}/v2/`, (status) => status === 401, 'appview')

const image = `${registry}/${DEMO_HANDLE}/hello:latest`
const demoLayout = join(dataDir, 'demo-image')
await writeOciImage(demoLayout, {
  tag: 'hello',
  layers: [{ files: [{ path: 'hello.txt', content: 'Hello from ATCR!\n' }] }],
})
console.log(`
ATCR local stack is up (loopback only; state in .data/, logs in .data/logs/):
  registry (AppView)  http://${registry}
  hold                ${holdUrl}  (${holdDid})
  PDS                 ${pds.url}
  PLC directory       ${plc.url}
  demo account        ${DEMO_HANDLE}  ${demo.did}
  app password        ${demo.appPassword}

Push and pull (the image name is <registry>/<handle or did-plc-...>/<repository>):
  skopeo copy --dest-tls-verify=false --dest-creds '${DEMO_HANDLE}:${demo.appPassword}' \\
    oci:.data/demo-image:hello docker://${image}
  skopeo inspect --tls-verify=false docker://${image}

  podman login --tls-verify=false -u ${DEMO_HANDLE} -p '${demo.appPassword}' ${registry}
  podman push --tls-verify=false <local image> ${image}
  podman pull --tls-verify=false ${image}

  docker login -u ${DEMO_HANDLE} -p '${demo.appPassword}' ${registry}
  docker push ${image}    # docker treats 127.0.0.1 registries as plain HTTP
  docker pull ${image}
Press Ctrl-C to stop.`)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) return
    stopping = true
    await Promise.all(children.map(stopChild))
    await pds.close()
    await plc.close()
    process.exit(0)
  })
}

/** Starts one of the project's services as its own process, logging to .data/logs. */
function startService(name: string, bin: string, env: Record<string, string>): ChildProcess {
  const log = createWriteStream(join(dataDir, 'logs', `${name}.log`), { flags: 'a' })
  const child = spawn(process.execPath, [join(root, bin), 'serve'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  child.on('exit', (code) => {
    if (!stopping) {
      console.error(`${name} exited (${code}); see .data/logs/${name}.log`)
      process.exit(1)
    }
  })
  return child
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function waitFor(url: string, ready: (status: number) => boolean, name: string) {
  for (let attempt = 0; attempt < 150; attempt++) {
    const status = await fetch(url).then(
      (res) => res.status,
      () => 0,
    )
    if (ready(status)) return
    await sleep(200)
  }
  throw new Error(`${name} did not come up; see .data/logs/${name}.log`)
}

/** Creates the demo account on first start; later starts log in to the same one. */
async function ensureDemoAccount(): Promise<{ did: string; appPassword: string }> {
  const agent = new AtpAgent({ service: pds.url })
  const existing = await agent
    .login({ identifier: DEMO_HANDLE, password: DEMO_PASSWORD })
    .catch(() => null)
  if (!existing) {
    await pds.createAccount(DEMO_HANDLE, { password: DEMO_PASSWORD })
    await agent.login({ identifier: DEMO_HANDLE, password: DEMO_PASSWORD })
  }
  const appPassword = await agent.com.atproto.server.createAppPassword({
    name: `dev-${Date.now()}`,
  })
  return { did: agent.session!.did, appPassword: appPassword.data.password }
}
