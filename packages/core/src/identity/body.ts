/** The body was larger than the caller is willing to hold in memory. */
export class ResponseTooLargeError extends Error {
  readonly code = 'ResponseTooLarge'
  readonly limit: number
  constructor(url: string, limit: number) {
    super(`response from ${url} exceeds ${limit} bytes`)
    this.name = 'ResponseTooLargeError'
    this.limit = limit
  }
}

/**
 * Reads a response body as UTF-8, refusing (and cancelling) it beyond `maxBytes`, so a
 * remote server cannot make us buffer without bound.
 */
export async function readBoundedText(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel()
    throw new ResponseTooLargeError(response.url, maxBytes)
  }
  if (!response.body) return ''
  return readBoundedChunks(response.body, maxBytes, response.url)
}

/**
 * Chunks as UTF-8, refused beyond `maxBytes`. Leaving the loop early cancels a web stream
 * and destroys a Node one, so the rest is never read.
 */
export async function readBoundedChunks(
  chunks: AsyncIterable<Uint8Array>,
  maxBytes: number,
  url: string,
): Promise<string> {
  const parts: Uint8Array[] = []
  let total = 0
  for await (const chunk of chunks) {
    total += chunk.byteLength
    if (total > maxBytes) throw new ResponseTooLargeError(url, maxBytes)
    parts.push(chunk)
  }
  return Buffer.concat(parts, total).toString('utf8')
}

/** `readBoundedText` then `JSON.parse`. */
export async function readBoundedJson(response: Response, maxBytes: number): Promise<unknown> {
  return JSON.parse(await readBoundedText(response, maxBytes))
}
