import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { envToCfg, envToSecrets, PDS } from '@atproto/pds'
import { bindToLoopback, freePort } from './ports.ts'

export interface TestAccount {
  did: string
  handle: string
  password: string
  /** An app password, as a registry user would paste into `docker login`. */
  appPassword: string
  /** An agent logged in with the account password. */
  agent: AtpAgent
}

export interface TestPds {
  url: string
  /** The PDS's own service DID (did:web). */
  did: string
  pds: PDS
  createAccount(handle: string): Promise<TestAccount>
  close(): Promise<void>
}

export interface StartPdsOptions {
  plcUrl: string
  /** Largest blob the PDS accepts; raised well above the 5 MB default for manifests. */
  blobUploadLimit?: number
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

/** A real @atproto/pds in dev mode on loopback, storing everything in a temporary folder. */
export async function startPds(options: StartPdsOptions): Promise<TestPds> {
  const port = await freePort()
  const dataDir = await mkdtemp(join(tmpdir(), 'atcr-pds-'))
  const rotationKey = await Secp256k1Keypair.create({ exportable: true })
  const url = `http://localhost:${port}`
  const env = {
    devMode: true,
    port,
    hostname: 'localhost',
    dataDirectory: dataDir,
    blobstoreDiskLocation: join(dataDir, 'blobs'),
    didPlcUrl: options.plcUrl,
    serviceHandleDomains: ['.test'],
    inviteRequired: false,
    blobUploadLimit: options.blobUploadLimit ?? 64 * 1024 * 1024,
    jwtSecret: 'testkit-jwt-secret',
    adminPassword: 'testkit-admin',
    plcRotationKeyK256PrivateKeyHex: hex(await rotationKey.export()),
    bskyAppViewUrl: 'https://appview.invalid',
    bskyAppViewDid: 'did:example:appview',
    modServiceUrl: 'https://moderation.invalid',
    modServiceDid: 'did:example:moderation',
    rateLimitsEnabled: false,
    crawlers: [],
  }
  const pds = await PDS.create(envToCfg(env), envToSecrets(env))
  bindToLoopback(pds.app)
  await pds.start()

  let accounts = 0
  const createAccount = async (handle: string): Promise<TestAccount> => {
    const agent = new AtpAgent({ service: url })
    const password = `password-${++accounts}-${handle}`
    const created = await agent.createAccount({
      handle,
      email: `${handle.replace(/\W/g, '-')}@example.com`,
      password,
    })
    const appPassword = await agent.com.atproto.server.createAppPassword({ name: 'atcr-test' })
    return {
      did: created.data.did,
      handle,
      password,
      appPassword: appPassword.data.password,
      agent,
    }
  }

  return {
    url,
    did: pds.ctx.cfg.service.did,
    pds,
    createAccount,
    close: async () => {
      await pds.destroy()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}
