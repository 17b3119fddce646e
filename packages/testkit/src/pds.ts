import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
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
  createAccount(handle: string, options?: { password?: string }): Promise<TestAccount>
  /**
   * Publishes lexicon documents (e.g. the io.atcr.authFullApp permission set) as
   * com.atproto.lexicon.schema records of an account on this PDS and makes that account
   * the PDS's lexicon authority, so that `include:` OAuth scopes naming them resolve.
   */
  publishLexicons(documents: readonly { id: string }[]): Promise<void>
  close(): Promise<void>
}

export interface StartPdsOptions {
  plcUrl: string
  /** Keep state here across restarts (the local stack); a temporary folder when omitted. */
  dataDir?: string
  /** Fixed port (the local stack keeps its URLs stable); a free one when omitted. */
  port?: number
  /** Largest blob the PDS accepts; raised well above the 5 MB default for manifests. */
  blobUploadLimit?: number
}

async function loadOrCreateRotationKey(path: string): Promise<string> {
  const existing = await readFile(path, 'utf8').catch(() => null)
  if (existing) return existing.trim()
  const key = await Secp256k1Keypair.create({ exportable: true })
  const hex = Buffer.from(await key.export()).toString('hex')
  await writeFile(path, hex, { mode: 0o600 })
  return hex
}

/** A real @atproto/pds in dev mode on loopback, storing everything in a temporary folder. */
export async function startPds(options: StartPdsOptions): Promise<TestPds> {
  const port = options.port ?? (await freePort())
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'atcr-pds-')))
  await mkdir(dataDir, { recursive: true })
  const rotationKeyHex = await loadOrCreateRotationKey(join(dataDir, 'plc-rotation.key'))
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
    plcRotationKeyK256PrivateKeyHex: rotationKeyHex,
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
  const createAccount = async (
    handle: string,
    options: { password?: string } = {},
  ): Promise<TestAccount> => {
    const agent = new AtpAgent({ service: url })
    const password = options.password ?? `password-${++accounts}-${handle}`
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

  let lexiconAuthority: { did: string; agent: AtpAgent } | undefined
  const lexiconAccount = async () => {
    const handle = 'atcr-lexicons.test'
    const password = 'testkit-lexicons'
    try {
      return await createAccount(handle, { password })
    } catch {
      // A data directory kept across restarts (the local stack) has the account already.
      const agent = new AtpAgent({ service: url })
      await agent.login({ identifier: handle, password })
      return { did: agent.session!.did, agent }
    }
  }
  const publishLexicons = async (documents: readonly { id: string }[]) => {
    lexiconAuthority ??= await lexiconAccount()
    for (const document of documents) {
      await lexiconAuthority.agent.com.atproto.repo.putRecord({
        repo: lexiconAuthority.did,
        collection: 'com.atproto.lexicon.schema',
        rkey: document.id,
        record: { $type: 'com.atproto.lexicon.schema', ...document },
      })
    }
    // Read by the PDS's lexicon resolver at each resolution (not copied at start-up).
    ;(pds.ctx.cfg as { lexicon: { didAuthority?: string } }).lexicon.didAuthority =
      lexiconAuthority.did
  }

  return {
    url,
    did: pds.ctx.cfg.service.did,
    pds,
    createAccount,
    publishLexicons,
    close: async () => {
      await pds.destroy()
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true })
    },
  }
}
