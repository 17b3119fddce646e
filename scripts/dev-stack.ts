// The local stack behind `./scripts/dev`: a PLC directory and a PDS with a demo account,
// all on loopback, keeping their state in .data/ so a restart finds the same identities.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { startPds, startPlc } from '@atcr/testkit'
import { AtpAgent } from '@atproto/api'

const dataDir = join(import.meta.dirname, '..', '.data')
const PLC_PORT = 2582
const PDS_PORT = 2583
const DEMO_HANDLE = 'sailor.test'
const DEMO_PASSWORD = 'demo-password'

await mkdir(dataDir, { recursive: true })
const plc = await startPlc({ opLog: join(dataDir, 'plc-ops.jsonl'), port: PLC_PORT })
const pds = await startPds({ plcUrl: plc.url, dataDir: join(dataDir, 'pds'), port: PDS_PORT })
const demo = await ensureDemoAccount()

console.log(`
ATCR local stack is up (loopback only; state in .data/):
  PLC directory  ${plc.url}
  PDS            ${pds.url}
  demo account   ${DEMO_HANDLE} (${demo.did})
  app password   ${demo.appPassword}
Press Ctrl-C to stop.`)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) return
    stopping = true
    await pds.close()
    await plc.close()
    process.exit(0)
  })
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
