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

/**
 * V8 sizes its young generation from the host's memory (2 x 32 MiB of semi-spaces on a
 * machine with a few GiB), which a service streaming blobs fills with short-lived garbage
 * and keeps resident. Called first thing by a service's bin: unless the caller chose a
 * size (command line or NODE_OPTIONS), node starts over with `--max-semi-space-size` through
 * execve: the same process id, so a supervisor or PID file still sees one process. Not with
 * an IPC channel to a parent, which execve would close, nor where execve is unavailable
 * (the service then runs with V8's default). Measurements: bench/README.md.
 */
export function relaunchWithSemiSpace(mebibytes: number): void {
  const chosen = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some(
    (flag) => flag.startsWith('--max-semi-space-size'),
  )
  if (chosen || typeof process.execve !== 'function' || process.channel) return
  process.execve(process.execPath, [
    process.execPath,
    `--max-semi-space-size=${mebibytes}`,
    ...process.execArgv,
    process.argv[1]!,
    ...process.argv.slice(2),
  ])
}
