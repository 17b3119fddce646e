// Running and shutting down the services: waiting for the signal to stop, and closing
// without hanging on a client that never finishes reading.
import { once } from 'node:events'
import type { Server } from 'node:http'

export { closeEarlyAnswersGently } from './early-answers.ts'

export interface ClosableApp {
  server: Server
  close(): Promise<unknown>
}

/**
 * Closes a server app: it stops accepting connections at once, in-flight requests get
 * `graceMs` to finish; after that their connections are cut, so a stalled download cannot
 * hold a shutdown forever.
 */
export async function closeWithGrace(app: ClosableApp, graceMs = 10_000): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), graceMs)
  try {
    await app.close()
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Resolves when the service should stop: SIGINT or SIGTERM, or, when a supervising parent
 * spawned it with an IPC channel (as `./scripts/dev` does), when that parent is gone, so a
 * service never outlives the stack that started it.
 */
export async function untilStopRequested(): Promise<string> {
  const controller = new AbortController()
  const { signal } = controller
  const waits: Promise<string>[] = [
    once(process, 'SIGINT', { signal }).then(() => 'SIGINT'),
    once(process, 'SIGTERM', { signal }).then(() => 'SIGTERM'),
  ]
  if (process.channel) {
    process.channel.unref()
    waits.push(once(process, 'disconnect', { signal }).then(() => 'parent exited'))
  }
  try {
    return await Promise.race(waits)
  } finally {
    controller.abort()
    for (const wait of waits) wait.catch(() => {})
  }
}
