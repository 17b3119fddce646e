import { once } from 'node:events'
import type { Server } from 'node:http'
import { createServer } from 'node:net'

export const LOOPBACK = '127.0.0.1'

/** A free TCP port on loopback, for servers that must know their port before they start. */
export async function freePort(): Promise<number> {
  const probe = createServer()
  probe.listen(0, LOOPBACK)
  await once(probe, 'listening')
  const address = probe.address()
  probe.close()
  await once(probe, 'close')
  if (address === null || typeof address === 'string') throw new Error('no loopback port')
  return address.port
}

/**
 * Makes `app.listen(port)` bind to loopback only. The PDS and the PLC server call
 * listen without a host, which would otherwise bind every interface.
 */
export function bindToLoopback(app: { listen: (...args: never[]) => Server }): void {
  const listen = app.listen.bind(app) as (port: number, host: string) => Server
  app.listen = ((port: number) => listen(port, LOOPBACK)) as typeof app.listen
}

export function portOf(server: Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server is not listening')
  return address.port
}
