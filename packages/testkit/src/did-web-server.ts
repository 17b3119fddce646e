import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { LOOPBACK, portOf } from './ports.ts'

export interface DidWebServer {
  /** `http://localhost:PORT`. */
  url: string
  /** `did:web:localhost%3APORT`, the DID this server's document speaks for. */
  did: string
  /** What `/.well-known/did.json` serves; null answers 404. */
  setDocument(document: object | null): void
  /** What `/.well-known/atproto-did` serves (handle resolution); null answers 404. */
  setAtprotoDid(did: string | null): void
  /** Extra routes (path → handler), e.g. redirects for SSRF tests. */
  route(path: string, handler: (req: IncomingMessage, res: ServerResponse) => void): void
  /** Requests received so far, by path. */
  requests: string[]
  close(): Promise<void>
}

/** A tiny HTTP server on loopback that serves a did:web document (and atproto-did). */
export async function startDidWebServer(): Promise<DidWebServer> {
  let document: object | null = null
  let atprotoDid: string | null = null
  const routes = new Map<string, (req: IncomingMessage, res: ServerResponse) => void>()
  const requests: string[] = []
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    requests.push(path)
    const custom = routes.get(path)
    if (custom) return custom(req, res)
    if (path === '/.well-known/did.json' && document) {
      res.writeHead(200, { 'content-type': 'application/did+ld+json' })
      return res.end(JSON.stringify(document))
    }
    if (path === '/.well-known/atproto-did' && atprotoDid) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      return res.end(atprotoDid)
    }
    res.writeHead(404, { 'content-type': 'text/plain' })
    res.end('not found')
  })
  server.listen(0, LOOPBACK)
  await once(server, 'listening')
  const port = portOf(server)
  return {
    url: `http://localhost:${port}`,
    did: `did:web:localhost%3A${port}`,
    setDocument: (next) => {
      document = next
    },
    setAtprotoDid: (next) => {
      atprotoDid = next
    },
    route: (path, handler) => {
      routes.set(path, handler)
    },
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
