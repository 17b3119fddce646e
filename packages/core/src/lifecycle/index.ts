// Shutting the services down without hanging on a client that never finishes reading.
import type { Server } from 'node:http'

export interface ClosableApp {
  server: Server
  close(): Promise<unknown>
}

/**
 * Closes a server app: in-flight requests get `graceMs` to finish; after that their
 * connections are cut, so a stalled download cannot hold a shutdown forever.
 */
export async function closeWithGrace(app: ClosableApp, graceMs = 10_000): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs)
  try {
    await app.close()
  } finally {
    clearTimeout(timer)
  }
}
