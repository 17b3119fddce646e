import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { Sequencer } from '../sequencer.ts'
import { errorFrame, messageFrame } from './frames.ts'

/** WebSocket close code for a policy error, sent after an error frame. */
const CLOSE_POLICY = 1008
const PAGE = 200
const CLOSE_GRACE_MS = 5000

export interface OutboxOptions {
  /**
   * How far (in events) a subscriber that had caught up may fall behind the head before
   * it is dropped with `ConsumerTooSlow`. Frames are read from the database only as the
   * socket accepts them, so a slow reader costs at most one page of frames in memory.
   */
  maxLagEvents?: number
  /** A ping this often; a subscriber that has not answered the previous one is dropped. */
  heartbeatMs?: number
}

/**
 * Serves one subscribeRepos connection: replays the stored events after `cursor`, then
 * follows the head. Without a cursor, only new events. Returns when the socket closes.
 */
export async function serveSubscription(
  socket: WebSocket,
  sequencer: Sequencer,
  cursor: number | undefined,
  opts: OutboxOptions,
  log: FastifyBaseLogger,
): Promise<void> {
  const maxLag = opts.maxLagEvents ?? 500
  const abort = new AbortController()
  const { signal } = abort
  socket.once('close', () => abort.abort())
  socket.on('error', (err) => log.debug({ err }, 'subscribeRepos socket error'))

  const fail = (error: string, message: string) => {
    if (signal.aborted) return
    abort.abort()
    socket.send(errorFrame(error, message), { binary: true }, () => undefined)
    socket.close(CLOSE_POLICY, error)
    // A stalled reader may never complete the close handshake.
    setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref()
  }

  if (cursor !== undefined && cursor > sequencer.head) {
    fail('FutureCursor', 'Cursor in the future.')
    return
  }

  let last = cursor ?? sequencer.head
  if (cursor !== undefined) {
    // Events before the oldest kept one were pruned: say so, then replay what is kept.
    const oldest = await sequencer.oldest()
    if (oldest > cursor + 1) {
      socket.send(
        messageFrame('#info', {
          name: 'OutdatedCursor',
          message: 'Requested cursor exceeded limit. Possibly missing events',
        }),
        { binary: true },
      )
    }
  }
  let live = false
  const stopLagWatch = sequencer.onEvent((head) => {
    if (live && head - last > maxLag) fail('ConsumerTooSlow', 'Stream consumer too slow')
  })
  const stopHeartbeat = heartbeat(socket, opts.heartbeatMs ?? 30_000)
  try {
    while (!signal.aborted && !sequencer.isClosed) {
      const events = await sequencer.eventsAfter(last, PAGE)
      if (events.length === 0) {
        live = true
        await sequencer.waitForEvent(last, signal)
        continue
      }
      for (const event of events) {
        if (signal.aborted) return
        await send(socket, event.frame)
        last = event.seq
      }
    }
  } catch (err) {
    // After fail() the close handshake (with its grace period) is already under way.
    if (!signal.aborted) {
      log.warn({ err }, 'subscribeRepos connection failed')
      socket.terminate()
    }
  } finally {
    stopLagWatch()
    stopHeartbeat()
    if (sequencer.isClosed && socket.readyState === socket.OPEN) socket.close(1001, 'shutdown')
  }
}

/** Resolves once the socket has handed the frame to the OS: the backpressure point. */
function send(socket: WebSocket, frame: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.send(frame, { binary: true }, (err) => (err ? reject(err) : resolve()))
  })
}

function heartbeat(socket: WebSocket, intervalMs: number): () => void {
  let alive = true
  socket.on('pong', () => {
    alive = true
  })
  const timer = setInterval(() => {
    if (!alive) {
      socket.terminate()
      return
    }
    alive = false
    socket.ping()
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
