import { Database, PlcServer } from '@did-plc/server'
import { bindToLoopback, portOf } from './ports.ts'

export interface TestPlc {
  /** Base URL, spelled with `localhost`: the PDS refuses to fetch from IP hosts. */
  url: string
  close(): Promise<void>
}

/** A real PLC directory (@did-plc/server) with an in-memory database, on loopback. */
export async function startPlc(): Promise<TestPlc> {
  const server = PlcServer.create({ db: Database.mock(), port: 0 })
  bindToLoopback(server.app)
  const http = await server.start()
  return {
    url: `http://localhost:${portOf(http)}`,
    close: () => server.destroy(),
  }
}
