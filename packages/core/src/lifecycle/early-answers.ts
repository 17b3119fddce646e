// Answers given before the request body was read (a refusal: a body too large, a quota, a
// full disk, an unknown upload) end the connection gently. Node would otherwise close the
// socket at once, which resets it while the client is still sending, and HTTP clients
// (undici, Go's) then report a broken pipe instead of the answer.
import type { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply } from 'fastify'

/** What is read and dropped of a refused body at most, and for how long. */
const LINGER_BYTES = 64 * 1024 * 1024
const LINGER_MS = 5_000

/**
 * Registers, on `app` and everything under it, the gentle close of connections whose
 * answer went out before their body was read: the answer is written with
 * `connection: close`, the sending side closed (FIN), and the rest of the body read and
 * dropped until the client stops, up to LINGER_BYTES and LINGER_MS. Shutting down does
 * not wait for such bodies.
 */
export function closeEarlyAnswersGently(app: FastifyInstance): void {
  const lingering = new Set<Socket>()
  app.addHook('onSend', async (request, reply) => {
    // Requests injected in-process (light-my-request) have no real socket to linger on.
    if (!request.raw.complete && request.raw.socket instanceof Socket) {
      lingeringClose(reply, request.raw, lingering)
    }
  })
  app.addHook('preClose', async () => {
    for (const socket of lingering) socket.destroy()
  })
}

function lingeringClose(reply: FastifyReply, raw: IncomingMessage, lingering: Set<Socket>): void {
  const { socket } = raw
  if (lingering.has(socket)) return
  reply.header('connection', 'close')
  lingering.add(socket)
  let drained = 0
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  socket.on('data', (chunk: Buffer) => {
    drained += chunk.length
    if (drained > LINGER_BYTES) socket.destroy()
  })
  socket.once('close', () => {
    clearTimeout(timer)
    lingering.delete(socket)
  })
  // Called by Node's HTTP server once a `connection: close` answer is written.
  socket.destroySoon = () => {
    socket.end()
    socket.once('end', () => socket.destroy())
  }
  // A reader that stopped (an async iterator over the body) may have left its 'readable'
  // listener, which would keep the request paused.
  raw.removeAllListeners('readable')
  raw.resume()
}
