import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { type HoldDatabase, openDatabase } from '../src/db/index.ts'
import {
  type HoldRepo,
  openHoldRepo,
  type RepoRoutesOptions,
  registerRepoRoutes,
} from '../src/pds/index.ts'

/** A hold's embedded PDS on loopback, with a did:web document served by the same app. */
export interface TestHold {
  dir: string
  port: number
  did: string
  handle: string
  /** `http://localhost:PORT` */
  url: string
  /** `ws://localhost:PORT` */
  wsUrl: string
  keypair: Secp256k1Keypair
  database: HoldDatabase
  repo: HoldRepo
  app: FastifyInstance
  didDocument: Record<string, unknown>
  /** Stops the server and closes the database; the directory stays (for a restart). */
  stop(): Promise<void>
}

export interface StartTestHoldOptions {
  dir?: string
  port?: number
  keypair?: Secp256k1Keypair
  routes?: Partial<Omit<RepoRoutesOptions, 'repo'>>
  /** Runs on the app before the routes, e.g. to add test-only routes. */
  setup?: (app: FastifyInstance) => void | Promise<void>
}

export const HANDLE = 'hold.test'

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'atcr-pds-'))
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

/** A port free on loopback: the did:web names it before the server starts. */
export async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const address = probe.address()
  probe.close()
  await once(probe, 'close')
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export function didDocumentFor(did: string, keypair: Secp256k1Keypair, url: string) {
  return {
    '@context': [
      'https://www.w3.org/ns/did/v1',
      'https://w3id.org/security/multikey/v1',
      'https://w3id.org/security/suites/secp256k1-2019/v1',
    ],
    id: did,
    alsoKnownAs: [`at://${HANDLE}`],
    verificationMethod: [
      {
        id: `${did}#atproto`,
        type: 'Multikey',
        controller: did,
        publicKeyMultibase: keypair.did().slice('did:key:'.length),
      },
    ],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: url }],
  }
}

export async function startTestHold(opts: StartTestHoldOptions = {}): Promise<TestHold> {
  const dir = opts.dir ?? (await tempDir())
  const port = opts.port ?? (await freePort())
  const keypair = opts.keypair ?? (await Secp256k1Keypair.create({ exportable: true }))
  const did = `did:web:localhost%3A${port}`
  const url = `http://localhost:${port}`
  const didDocument = didDocumentFor(did, keypair, url)

  const database = await openDatabase(join(dir, 'hold.sqlite'))
  const repo = await openHoldRepo({ db: database, did, signingKey: keypair, pollMs: 200 })
  const app = Fastify({ logger: false })
  app.get('/.well-known/did.json', async () => didDocument)
  await opts.setup?.(app)
  await registerRepoRoutes(app, {
    repo,
    handle: HANDLE,
    getDidDocument: () => didDocument,
    ...opts.routes,
  })
  await app.listen({ port, host: '127.0.0.1' })

  return {
    dir,
    port,
    did,
    handle: HANDLE,
    url,
    wsUrl: `ws://localhost:${port}`,
    keypair,
    database,
    repo,
    app,
    didDocument,
    async stop() {
      await repo.close()
      await app.close()
      await database.close()
    },
  }
}
