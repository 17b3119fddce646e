// A hold's embedded PDS alone, without the Hold class: its repo and XRPC routes on a
// Fastify app on loopback, with a did:web document served by the same app.
import { join } from 'node:path'
import { freePort, makeTempDir, removeTempDir } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import { type HoldDatabase, openDatabase } from '../src/db/index.ts'
import { didDocument } from '../src/identity.ts'
import {
  type HoldRepo,
  openHoldRepo,
  type RepoRoutesOptions,
  registerRepoRoutes,
} from '../src/pds/index.ts'

export interface EmbeddedPds {
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
  /** Stops, then removes the directory. */
  close(): Promise<void>
}

export interface StartEmbeddedPdsOptions {
  dir?: string
  port?: number
  keypair?: Secp256k1Keypair
  routes?: Partial<Omit<RepoRoutesOptions, 'repo'>>
  /** Runs on the app before the routes, e.g. to add test-only routes. */
  setup?: (app: FastifyInstance) => void | Promise<void>
}

const HANDLE = 'hold.test'
export const CREW = 'io.atcr.hold.crew'

/** A crew record with a fixed date, so that the same writes give the same blocks. */
export function crewRecord(
  member: string,
  role = 'write',
  permissions = ['blob:read', 'blob:write'],
) {
  return { $type: CREW, member, role, permissions, addedAt: '2025-01-01T00:00:00.000Z' }
}

/** Opens the repo in `dir` (a new temp dir by default) and serves it on a free port. */
export async function startEmbeddedPds(opts: StartEmbeddedPdsOptions = {}): Promise<EmbeddedPds> {
  const dir = opts.dir ?? (await makeTempDir('atcr-pds-'))
  const port = opts.port ?? (await freePort())
  const keypair = opts.keypair ?? (await Secp256k1Keypair.create({ exportable: true }))
  const did = `did:web:localhost%3A${port}`
  const url = `http://localhost:${port}`
  const document = didDocument(did, keypair, HANDLE, url)

  const database = await openDatabase(join(dir, 'hold.sqlite'))
  const repo = await openHoldRepo({ db: database, did, signingKey: keypair, pollMs: 200 })
  const app = Fastify({ logger: false })
  app.get('/.well-known/did.json', async () => document)
  await opts.setup?.(app)
  await registerRepoRoutes(app, {
    repo,
    handle: HANDLE,
    getDidDocument: () => document,
    ...opts.routes,
  })
  await app.listen({ port, host: '127.0.0.1' })
  const stop = async () => {
    await repo.close()
    await app.close()
    await database.close()
  }

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
    didDocument: document,
    stop,
    async close() {
      await stop()
      await removeTempDir(dir)
    },
  }
}
