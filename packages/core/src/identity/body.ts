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
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    total += value.byteLength
    if (total > maxBytes) {
      await reader.cancel()
      throw new ResponseTooLargeError(response.url, maxBytes)
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** `readBoundedText` then `JSON.parse`. */
export async function readBoundedJson(response: Response, maxBytes: number): Promise<unknown> {
  return JSON.parse(await readBoundedText(response, maxBytes))
}
