// Small pieces of HTTP the /v2 handlers share: query values, bounded bodies, ranges.
import { OciError } from '@atcr/core/oci'
import type { FastifyRequest } from 'fastify'

/** A query parameter's first value, or undefined. */
export function queryValue(request: FastifyRequest, key: string): string | undefined {
  const value = (request.query as Record<string, unknown>)[key]
  const first = Array.isArray(value) ? value[0] : value
  return typeof first === 'string' ? first : undefined
}

export function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** The declared Content-Length, or undefined when absent (chunked) or malformed. */
export function contentLength(request: FastifyRequest): number | undefined {
  const value = header(request, 'content-length')
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined
}

/** Whether the request carries a body at all. */
export function hasBody(request: FastifyRequest): boolean {
  const length = contentLength(request)
  return length !== undefined ? length > 0 : header(request, 'transfer-encoding') !== undefined
}

/**
 * Reads the whole body, refusing (with `tooLarge()`) as soon as it exceeds `limit`, so that
 * at most `limit` bytes are ever held.
 */
export async function readBody(
  request: FastifyRequest,
  limit: number,
  tooLarge: () => OciError,
): Promise<Buffer> {
  const declared = contentLength(request)
  if (declared !== undefined && declared > limit) throw tooLarge()
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of request.raw as AsyncIterable<Buffer>) {
    total += chunk.byteLength
    if (total > limit) throw tooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, total)
}

/**
 * A chunk's `Content-Range` as the distribution spec writes it (`<start>-<end>`,
 * inclusive); the HTTP spellings `bytes <start>-<end>/<size>` are accepted too.
 */
export function parseContentRange(
  value: string | undefined,
): { start: number; end: number } | undefined {
  if (value === undefined) return undefined
  const match = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d+|\*))?$/.exec(value.trim())
  if (!match) {
    throw new OciError('RANGE_INVALID', {
      message: `malformed Content-Range ${JSON.stringify(value.slice(0, 100))}`,
      status: 416,
    })
  }
  const start = Number(match[1])
  const end = Number(match[2])
  if (end < start) {
    throw new OciError('RANGE_INVALID', {
      message: `Content-Range ends (${end}) before it starts (${start})`,
      status: 416,
    })
  }
  return { start, end }
}

/** The `Range` header of upload status answers: `0-<last byte>` (`0-0` when empty). */
export function uploadRange(offset: number): string {
  return `0-${Math.max(offset - 1, 0)}`
}
