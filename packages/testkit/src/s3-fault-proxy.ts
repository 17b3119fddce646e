// An HTTP proxy on loopback in front of a real S3 server (s3rver) that passes requests on
// as they are, except those a test asked it to break: answered with an S3 error (a 500
// InternalError, a 503 SlowDown, with the XML body AWS sends), left without an answer
// (a stalled server), or answered with a body cut short. Operations are told apart as the
// S3 API defines them, so a test can break, say, only UploadPart.
import { once } from 'node:events'
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { LOOPBACK } from './ports.ts'

export type S3Operation =
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'Other'

export type S3Fault =
  /** An S3 error answer. */
  | { kind: 'error'; status: 500 | 503; code: 'InternalError' | 'SlowDown' }
  /** The request read, no answer ever (until `clear` or `close`). */
  | { kind: 'stall' }
  /** The real answer, its body cut off after `afterBytes`. */
  | { kind: 'cut-body'; afterBytes: number }

export interface S3FaultRule {
  operations: S3Operation[]
  fault: S3Fault
  /** How many matching requests to break (default: all, until `clear`). */
  times?: number
}

export interface S3FaultProxy {
  /** `http://127.0.0.1:PORT` */
  endpoint: string
  /** Breaks the requests the rule matches, from now on. */
  inject(rule: S3FaultRule): void
  /** Passes everything on again; stalled requests are dropped (their sockets closed). */
  clear(): void
  /** Operations seen so far, and whether each was broken. */
  seen(): { operation: S3Operation; broken: boolean }[]
  close(): Promise<void>
}

/** The S3 operation of a path-style request (bucket and key in the path). */
export function s3Operation(method: string, url: URL): S3Operation {
  const { searchParams: q } = url
  switch (method) {
    case 'PUT':
      return q.has('partNumber') && q.has('uploadId') ? 'UploadPart' : 'PutObject'
    case 'POST':
      if (q.has('uploads')) return 'CreateMultipartUpload'
      return q.has('uploadId') ? 'CompleteMultipartUpload' : 'Other'
    case 'DELETE':
      return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject'
    case 'GET':
      return url.pathname.split('/').filter(Boolean).length > 1 ? 'GetObject' : 'Other'
    case 'HEAD':
      return 'HeadObject'
    default:
      return 'Other'
  }
}

function errorBody(code: string): string {
  const message =
    code === 'SlowDown'
      ? 'Please reduce your request rate.'
      : 'We encountered an internal error. Please try again.'
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`
}

export async function startS3FaultProxy(targetPort: number): Promise<S3FaultProxy> {
  let rules: (S3FaultRule & { left: number })[] = []
  const stalled = new Set<Socket>()
  const seen: { operation: S3Operation; broken: boolean }[] = []

  const pass = (req: IncomingMessage, res: ServerResponse, cutAfter?: number) => {
    const upstream = httpRequest(
      { host: LOOPBACK, port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        if (cutAfter === undefined) {
          answer.pipe(res)
          return
        }
        let sent = 0
        answer.on('data', (chunk: Buffer) => {
          const room = cutAfter - sent
          if (room > 0) res.write(chunk.subarray(0, room))
          sent += chunk.length
          if (sent >= cutAfter) {
            answer.destroy()
            res.socket?.destroy()
          }
        })
        answer.on('end', () => res.end())
      },
    )
    upstream.on('error', () => res.socket?.destroy())
    req.pipe(upstream)
  }

  const server = createServer((req, res) => {
    const operation = s3Operation(req.method ?? 'GET', new URL(req.url ?? '/', 'http://s3'))
    const rule = rules.find((r) => r.left > 0 && r.operations.includes(operation))
    seen.push({ operation, broken: rule !== undefined })
    if (!rule) return pass(req, res)
    rule.left -= 1
    const { fault } = rule
    if (fault.kind === 'cut-body') return pass(req, res, fault.afterBytes)
    req.resume()
    if (fault.kind === 'stall') {
      stalled.add(req.socket)
      req.socket.once('close', () => stalled.delete(req.socket))
      return
    }
    req.once('end', () => {
      res.writeHead(fault.status, { 'content-type': 'application/xml' })
      res.end(errorBody(fault.code))
    })
  })
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const dropStalled = () => {
    for (const socket of stalled) socket.destroy()
    stalled.clear()
  }
  return {
    endpoint: `http://${LOOPBACK}:${port}`,
    inject: (rule) => {
      rules.push({ ...rule, left: rule.times ?? Number.POSITIVE_INFINITY })
    },
    clear: () => {
      rules = []
      dropStalled()
    },
    seen: () => [...seen],
    close: () =>
      new Promise((resolve) => {
        dropStalled()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
