/**
 * A small HTTP proxy in front of s3rver that supplies, the way AWS S3 documents them, the
 * multipart behaviours s3rver lacks, so that the S3 driver's requests for them can be
 * exercised end to end (TESTBED.md, "S3: s3rver"):
 *
 * - AbortMultipartUpload: s3rver answers MethodNotAllowed. The proxy marks the upload
 *   aborted and answers 204; later requests for it get 404 NoSuchUpload.
 * - CompleteMultipartUpload: s3rver checks neither etags nor part sizes, and a missing
 *   part makes it fail half-way. The proxy records every part s3rver accepted (size, etag)
 *   and answers InvalidPartOrder, InvalidPart or EntityTooSmall (400) before forwarding,
 *   as S3 does; the upload then stays open.
 * - UploadPartCopy: s3rver answers NotImplemented. The proxy performs it as a ranged GET
 *   of the source piped into an UploadPart, honouring x-amz-copy-source-if-match.
 * - Unknown, completed and aborted upload ids get 404 NoSuchUpload.
 * - ListObjectsV2 pagination: s3rver makes continuation tokens with DES, which OpenSSL 3
 *   (Node >= 17) no longer has, so every truncated listing (over 1,000 keys) is a 500. The
 *   proxy serves ListObjectsV2 from s3rver's marker-based ListObjects (V1), with the last
 *   key as the continuation token.
 * - `Range: bytes=0-0`: s3rver reads an end of 0 as "no end" (the whole object, and on an
 *   empty object a 206 that announces one byte and sends none). The proxy answers it as S3
 *   does: the first byte, or 416 InvalidRange for an empty object.
 *
 * Everything else (objects, ranges, listing, copy, presigned URLs) is s3rver's own
 * behaviour, forwarded untouched. The proxy records each request so tests can check what
 * the driver sent. Signatures are checked by neither.
 */
import { once } from 'node:events'
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RecordedRequest {
  method: string
  path: string
  query: URLSearchParams
  headers: IncomingHttpHeaders
}

export interface S3GapProxy {
  /** `http://127.0.0.1:PORT` */
  endpoint: string
  /** The same proxy named `http://localhost:PORT`, to stand for a distinct public address. */
  publicEndpoint: string
  requests: RecordedRequest[]
  close(): Promise<void>
}

interface Upload {
  state: 'open' | 'aborted' | 'completed'
  parts: Map<number, { etag: string; size: number }>
}

const MIN_PART_SIZE = 5 * 1024 * 1024

export async function startS3GapProxy(upstream: string): Promise<S3GapProxy> {
  const target = new URL(upstream)
  const uploads = new Map<string, Upload>()
  const requests: RecordedRequest[] = []
  // Its own agent, so that closing the proxy also closes its kept-alive upstream sockets
  // (which would otherwise keep s3rver from closing).
  const agent = new Agent({ keepAlive: true })

  const forward = (
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    body?: IncomingMessage | Buffer,
  ): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const outgoing = request(
        {
          host: target.hostname,
          port: target.port,
          method,
          path,
          headers: { ...headers, host: target.host },
          agent,
        },
        resolve,
      )
      outgoing.on('error', reject)
      if (body === undefined) outgoing.end()
      else if (Buffer.isBuffer(body)) outgoing.end(body)
      else body.pipe(outgoing)
    })

  const relay = (upstreamResponse: IncomingMessage, res: ServerResponse) => {
    res.writeHead(upstreamResponse.statusCode ?? 502, upstreamResponse.headers)
    upstreamResponse.pipe(res)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://proxy')
    const method = req.method ?? 'GET'
    requests.push({ method, path: url.pathname, query: url.searchParams, headers: req.headers })
    const uploadId = url.searchParams.get('uploadId')

    if (method === 'POST' && url.searchParams.has('uploads')) {
      const response = await forward(method, req.url ?? '/', req.headers, req)
      const body = await readBody(response)
      const id = /<UploadId>([^<]+)<\/UploadId>/.exec(body.toString())?.[1]
      if (response.statusCode === 200 && id) uploads.set(id, { state: 'open', parts: new Map() })
      res.writeHead(response.statusCode ?? 502, withoutLength(response.headers)).end(body)
      return
    }
    if (method === 'GET' && url.searchParams.get('list-type') === '2') {
      await listV2(req, res, url)
      return
    }
    if (method === 'GET' && req.headers.range === 'bytes=0-0') {
      await firstByte(req, res)
      return
    }
    if (uploadId === null) {
      relay(await forward(method, req.url ?? '/', req.headers, req), res)
      return
    }

    const upload = uploads.get(uploadId)
    if (upload === undefined || upload.state !== 'open') {
      req.resume()
      sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.')
      return
    }
    if (method === 'DELETE') {
      upload.state = 'aborted'
      res.writeHead(204).end()
      return
    }
    const partNumber = Number(url.searchParams.get('partNumber'))
    if (method === 'PUT' && req.headers['x-amz-copy-source'] !== undefined) {
      req.resume()
      await copyPart(req, res, url, upload, partNumber)
      return
    }
    if (method === 'PUT') {
      let size = 0
      req.on('data', (chunk: Buffer) => {
        size += chunk.length
      })
      const response = await forward(method, req.url ?? '/', req.headers, req)
      const etag = response.headers.etag
      if (response.statusCode === 200 && etag) {
        upload.parts.set(partNumber, { etag: bare(etag), size })
      }
      relay(response, res)
      return
    }
    if (method === 'POST') {
      const body = await readBody(req)
      const refusal = checkCompletion(body.toString(), upload)
      if (refusal !== null) {
        sendError(res, 400, refusal.code, refusal.message)
        return
      }
      const response = await forward(method, req.url ?? '/', req.headers, body)
      if (response.statusCode === 200) upload.state = 'completed'
      relay(response, res)
      return
    }
    relay(await forward(method, req.url ?? '/', req.headers, req), res)
  }

  const listV2 = async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const query = new URLSearchParams()
    for (const name of ['prefix', 'delimiter', 'max-keys']) {
      const value = url.searchParams.get(name)
      if (value !== null) query.set(name, value)
    }
    const token = url.searchParams.get('continuation-token')
    const marker = token
      ? Buffer.from(token, 'base64url').toString()
      : url.searchParams.get('start-after')
    if (marker) query.set('marker', marker)
    const response = await forward('GET', `${url.pathname}?${query}`, req.headers)
    const xml = (await readBody(response)).toString()
    if (response.statusCode !== 200) {
      res.writeHead(response.statusCode ?? 502, { 'content-type': 'application/xml' }).end(xml)
      return
    }
    const keys = [...xml.matchAll(/<Contents>[\s\S]*?<Key>([\s\S]*?)<\/Key>/g)].map((match) =>
      unescapeXml(match[1] ?? ''),
    )
    const last = keys.at(-1)
    const next =
      /<IsTruncated>true<\/IsTruncated>/.test(xml) && last !== undefined
        ? `<NextContinuationToken>${Buffer.from(last).toString('base64url')}</NextContinuationToken>`
        : ''
    const body = xml
      .replace(/<(Next)?Marker>[\s\S]*?<\/(Next)?Marker>|<Marker\/>/g, '')
      .replace(
        '</ListBucketResult>',
        `<KeyCount>${keys.length}</KeyCount>${next}</ListBucketResult>`,
      )
    res.writeHead(200, { 'content-type': 'application/xml' }).end(body)
  }

  const firstByte = async (req: IncomingMessage, res: ServerResponse) => {
    const { range: _, ...headers } = req.headers
    const response = await forward('GET', req.url ?? '/', headers)
    if (response.statusCode !== 200) {
      relay(response, res)
      return
    }
    const body = await readBody(response)
    if (body.length === 0) {
      sendError(res, 416, 'InvalidRange', 'The requested range is not satisfiable')
      return
    }
    res
      .writeHead(206, {
        ...withoutLength(response.headers),
        'content-range': `bytes 0-0/${body.length}`,
        'content-length': '1',
      })
      .end(body.subarray(0, 1))
  }

  const copyPart = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    upload: Upload,
    partNumber: number,
  ) => {
    const source = `/${decodeURIComponent(String(req.headers['x-amz-copy-source'])).replace(/^\//, '')}`
    const range = String(req.headers['x-amz-copy-source-range'] ?? '')
    const match = /^bytes=(\d+)-(\d+)$/.exec(range)
    if (!match) {
      sendError(
        res,
        400,
        'InvalidArgument',
        'The x-amz-copy-source-range value must be bytes=first-last',
      )
      return
    }
    const length = Number(match[2]) - Number(match[1]) + 1
    const sourceResponse = await forward('GET', source, { range })
    if (sourceResponse.statusCode !== 206) {
      await readBody(sourceResponse)
      sendError(res, sourceResponse.statusCode === 404 ? 404 : 400, 'InvalidRange', 'copy source')
      return
    }
    const ifMatch = req.headers['x-amz-copy-source-if-match']
    if (typeof ifMatch === 'string' && bare(ifMatch) !== bare(sourceResponse.headers.etag ?? '')) {
      sourceResponse.resume()
      sendError(res, 412, 'PreconditionFailed', 'At least one of the preconditions failed.')
      return
    }
    const partPath = `${url.pathname}?partNumber=${partNumber}&uploadId=${url.searchParams.get('uploadId')}`
    const response = await forward(
      'PUT',
      partPath,
      { 'content-length': String(length) },
      sourceResponse,
    )
    await readBody(response)
    const etag = response.headers.etag
    if (response.statusCode !== 200 || !etag) {
      sendError(res, 500, 'InternalError', 'part copy failed upstream')
      return
    }
    upload.parts.set(partNumber, { etag: bare(etag), size: length })
    res
      .writeHead(200, { 'content-type': 'application/xml' })
      .end(
        `<?xml version="1.0" encoding="UTF-8"?><CopyPartResult><LastModified>${new Date().toISOString()}</LastModified><ETag>"${bare(etag)}"</ETag></CopyPartResult>`,
      )
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'InternalError', String(err))
      else res.destroy()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    publicEndpoint: `http://localhost:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
      agent.destroy()
    },
  }
}

function checkCompletion(xml: string, upload: Upload): { code: string; message: string } | null {
  const listed = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((match) => {
    const inner = match[1] ?? ''
    return {
      partNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(inner)?.[1]),
      etag: bare(unescapeXml(/<ETag>([\s\S]*?)<\/ETag>/.exec(inner)?.[1] ?? '')),
    }
  })
  for (let i = 1; i < listed.length; i++) {
    if ((listed[i]?.partNumber ?? 0) <= (listed[i - 1]?.partNumber ?? 0)) {
      return { code: 'InvalidPartOrder', message: 'The list of parts was not in ascending order.' }
    }
  }
  for (const [index, part] of listed.entries()) {
    const stored = upload.parts.get(part.partNumber)
    if (stored === undefined || stored.etag !== part.etag) {
      return {
        code: 'InvalidPart',
        message: 'One or more of the specified parts could not be found.',
      }
    }
    if (index < listed.length - 1 && stored.size < MIN_PART_SIZE) {
      return {
        code: 'EntityTooSmall',
        message: 'Your proposed upload is smaller than the minimum allowed object size.',
      }
    }
  }
  return null
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  res
    .writeHead(status, { 'content-type': 'application/xml' })
    .end(
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>proxy</RequestId></Error>`,
    )
}

async function readBody(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

function withoutLength(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const { 'content-length': _, 'transfer-encoding': __, ...rest } = headers
  return rest
}

function bare(etag: string): string {
  return etag.replace(/^"|"$/g, '')
}

function unescapeXml(text: string): string {
  return text.replace(/&quot;/g, '"').replace(/&amp;/g, '&')
}
