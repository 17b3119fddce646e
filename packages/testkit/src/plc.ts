import { appendFile, readFile } from 'node:fs/promises'
import { Database, PlcServer } from '@did-plc/server'
import { bindToLoopback, portOf } from './ports.ts'

export interface TestPlc {
  /** Base URL, spelled with `localhost`: the PDS refuses to fetch from IP hosts. */
  url: string
  close(): Promise<void>
}

export interface StartPlcOptions {
  /**
   * A JSON-lines log of accepted operations, replayed at start and appended to on every
   * new operation, so a local stack keeps its DIDs across restarts. Tests omit it.
   */
  opLog?: string
  /** Fixed port (the local stack keeps its URLs stable); ephemeral when omitted. */
  port?: number
}

/** A real PLC directory (@did-plc/server) with an in-memory database, on loopback. */
export async function startPlc(options: StartPlcOptions = {}): Promise<TestPlc> {
  const db = Database.mock()
  if (options.opLog) await persistOps(db, options.opLog)
  const server = PlcServer.create({ db, port: options.port ?? 0 })
  bindToLoopback(server.app)
  const http = await server.start()
  return {
    url: `http://localhost:${portOf(http)}`,
    close: () => server.destroy(),
  }
}

type PlcOp = Parameters<ReturnType<typeof Database.mock>['validateAndAddOp']>[1]

async function persistOps(db: ReturnType<typeof Database.mock>, opLog: string): Promise<void> {
  const lines = await readFile(opLog, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return ''
    throw error
  })
  for (const line of lines.split('\n').filter(Boolean)) {
    const { did, op } = JSON.parse(line) as { did: string; op: PlcOp }
    await db.validateAndAddOp(did, op)
  }
  const add = db.validateAndAddOp.bind(db)
  db.validateAndAddOp = async (did, op) => {
    await add(did, op)
    await appendFile(opLog, `${JSON.stringify({ did, op })}\n`)
  }
}
