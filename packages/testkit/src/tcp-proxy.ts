// A TCP proxy on loopback that can cut every connection through it and refuse new ones for
// a while: a network fault between two real services (a firehose consumer and its PDS),
// with both processes left running.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { createConnection, createServer, type Socket } from 'node:net'
import { LOOPBACK } from './ports.ts'

export interface TcpProxy {
  /** `127.0.0.1:PORT` */
  host: string
  port: number
  /** Connections accepted so far. */
  connections(): number
  /** Destroys every open connection; with `refuse`, new ones are closed at once too. */
  cut(options?: { refuse?: boolean }): void
  /** Lets connections through again after a `cut({ refuse: true })`. */
  accept(): void
  close(): Promise<void>
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const open = new Set<Socket>()
  let accepted = 0
  let refusing = false
  const server = createServer((client) => {
    if (refusing) {
      client.destroy()
      return
    }
    accepted += 1
    const upstream = createConnection({ host: LOOPBACK, port: targetPort })
    for (const socket of [client, upstream]) {
      open.add(socket)
      socket.once('close', () => open.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream).pipe(client)
  })
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    host: `${LOOPBACK}:${port}`,
    port,
    connections: () => accepted,
    cut: (options = {}) => {
      refusing = options.refuse ?? false
      for (const socket of open) socket.destroy()
    },
    accept: () => {
      refusing = false
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of open) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
