// Requests whose body is a Node stream (an upload passed on while it arrives), sent with
// node:http(s) rather than fetch. A fetch body must be a web ReadableStream, and at blob
// sizes that costs a core: passing 512 MiB on through fetch took the AppView 2.7-3.7 s of
// CPU, through node:http 0.9 s, the difference mostly full garbage collections (23 per
// 512 MiB, none now; bench/README.md, round 6). The SSRF guard's checks apply as to fetch.

import { once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import type { LookupFunction, Socket } from 'node:net'
import { pipeline, Readable } from 'node:stream'

export interface StreamUploadInit {
  method: string
  /** Must name the body's length (content-length): holds and storage want it. */
  headers: Headers
  /** Sent as it is read; destroyed when the request fails. */
  body: Readable
  /**
   * Told of each chunk once the connection has sent it on, so the caller may free or reuse
   * it (a chunk still queued for the socket must stay as it is).
   */
  onSent?: (chunk: Uint8Array) => void
  signal?: AbortSignal
}

/** Sends a streamed body; resolves with the answer once its headers arrive. No redirects. */
export type StreamUpload = (url: string | URL, init: StreamUploadInit) => Promise<Response>

export interface StreamUploadGuard {
  /** Throws for a URL that must not be contacted (scheme, IP literal). */
  check(url: URL): void
  /** Resolves a host name, refusing forbidden addresses; null for a trusted origin. */
  lookupFor(url: URL): LookupFunction | null
  /** Turns a connection failure into the guard's own error, when it is one. */
  explain(error: unknown): unknown
  connectTimeoutMs: number
  /** How long to wait for the answer once the body is sent. */
  headersTimeoutMs: number
}

export function createStreamUpload(guard: StreamUploadGuard): StreamUpload & {
  close(): void
} {
  const agents = {
    'http:': new http.Agent({ keepAlive: true }),
    'https:': new https.Agent({ keepAlive: true }),
  }
  const upload = async (input: string | URL, init: StreamUploadInit) => {
    const url = new URL(input)
    try {
      guard.check(url)
    } catch (error) {
      init.body.destroy()
      throw error
    }
    const lookup = guard.lookupFor(url)
    const client = url.protocol === 'https:' ? https : http
    return new Promise<Response>((resolve, reject) => {
      const request = client.request(url, {
        method: init.method,
        headers: Object.fromEntries(init.headers),
        agent: agents[url.protocol as keyof typeof agents],
        signal: init.signal,
        ...(lookup ? { lookup } : {}),
      })
      request.on('socket', (socket: Socket) => {
        if (!socket.connecting) return
        const timedOut = () => request.destroy(new Error(`connecting to ${url.host} timed out`))
        socket.setTimeout(guard.connectTimeoutMs, timedOut)
        socket.once('connect', () => {
          socket.setTimeout(0)
          socket.off('timeout', timedOut)
        })
      })
      let answered = false
      request.on('finish', () => {
        if (answered) return
        request.setTimeout(guard.headersTimeoutMs, () =>
          request.destroy(new Error(`${url.host} sent no answer in time`)),
        )
      })
      request.on('response', (response) => {
        answered = true
        request.setTimeout(0)
        try {
          resolve(toResponse(response, init.method))
        } catch (error) {
          // A status fetch's Response cannot hold (a server's nonsense): a failed request.
          response.destroy()
          reject(error)
        }
      })
      // Failures after the body was sent (the server hangs up, no answer in time, the
      // caller aborts) come as the request's errors, once pipeline is done with it.
      const fail = (error: Error) => reject(guard.explain(error))
      request.on('error', fail)
      // An answer may come before the whole body (a refusal): the request then ends with
      // an error the answer already explains.
      pipeline(
        init.body,
        (chunks) => sendChunks(chunks, request, init.onSent),
        (error) => {
          if (error) {
            request.destroy(error)
            fail(error)
          }
        },
      )
    })
  }
  return Object.assign(upload, {
    close: () => {
      agents['http:'].destroy()
      agents['https:'].destroy()
    },
  })
}

/** Writes the chunks one after another, each once the socket has sent the last, then ends. */
async function sendChunks(
  chunks: AsyncIterable<Uint8Array>,
  request: http.ClientRequest,
  onSent: ((chunk: Uint8Array) => void) | undefined,
): Promise<void> {
  // A request destroyed before its socket connected never calls back its queued writes.
  const closed = once(request, 'close').then(() => {
    throw new Error('the request closed before its body was sent')
  })
  closed.catch(() => {})
  for await (const chunk of chunks) {
    const sent = new Promise<void>((resolve, reject) =>
      request.write(chunk, (error) => (error ? reject(error) : resolve())),
    )
    await Promise.race([sent, closed])
    onSent?.(chunk)
  }
  await Promise.race([new Promise<void>((resolve) => request.end(resolve)), closed])
}

function toResponse(response: http.IncomingMessage, method: string): Response {
  const headers = new Headers()
  for (const [name, value] of Object.entries(response.headers)) {
    if (Array.isArray(value)) for (const one of value) headers.append(name, one)
    else if (value !== undefined) headers.set(name, value)
  }
  const status = response.statusCode ?? 502
  const empty = method === 'HEAD' || status === 204 || status === 304
  if (empty) response.resume()
  const body = empty ? null : (Readable.toWeb(response) as ReadableStream<Uint8Array>)
  return new Response(body, { status, statusText: response.statusMessage, headers })
}
