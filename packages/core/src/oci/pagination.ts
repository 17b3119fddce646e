// Pagination of the tag list and catalog: the `n` and `last` query parameters and the
// RFC 8288 (formerly 5988) `Link: <…>; rel="next"` header of the distribution spec.
import { OciError } from './errors.ts'
import { quoteInput } from './input.ts'

/** CNCF distribution's default cap on `n`. */
export const DEFAULT_PAGE_SIZE_MAX = 1000

export interface PageRequest {
  /** Results wanted; absent when the client did not say. */
  n?: number
  /** Return results strictly after this one (a tag or repository name). */
  last?: string
}

/** A URLSearchParams, or a parsed query object such as fastify's (values string or string[]). */
export type QueryParams = URLSearchParams | Readonly<Record<string, unknown>>

// As in Go's url.Values.Get, which CNCF distribution uses: a repeated parameter counts once,
// by its first value, and an empty value counts as absent.
function firstValue(query: QueryParams, key: string): string | undefined {
  const raw = query instanceof URLSearchParams ? query.get(key) : query[key]
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined || value === null || value === '') return undefined
  return typeof value === 'string' ? value : String(value)
}

/**
 * Reads `n` and `last`. `n` must be a positive integer no larger than `max`, otherwise
 * PAGINATION_NUMBER_INVALID is thrown.
 */
export function parsePageRequest(query: QueryParams, options: { max?: number } = {}): PageRequest {
  const max = options.max ?? DEFAULT_PAGE_SIZE_MAX
  const page: PageRequest = {}
  const rawN = firstValue(query, 'n')
  if (rawN !== undefined) {
    const n = /^[0-9]{1,16}$/.test(rawN) ? Number(rawN) : Number.NaN
    if (!(n >= 1 && n <= max)) {
      throw new OciError('PAGINATION_NUMBER_INVALID', {
        message: `n must be an integer from 1 to ${max}, got ${quoteInput(rawN)}`,
        detail: { n: rawN.slice(0, 32), max },
      })
    }
    page.n = n
  }
  const last = firstValue(query, 'last')
  if (last !== undefined) page.last = last
  return page
}

/**
 * The Link header pointing at the next page: `<path?n=…&last=…>; rel="next"`. `path` is the
 * path of the current request without its query (e.g. `/v2/alice/app/tags/list`).
 */
export function buildNextLink(path: string, page: { n: number; last: string }): string {
  if (/[\s<>"\p{Cc}]/u.test(path)) {
    throw new TypeError('a Link target cannot contain spaces, quotes, angle brackets or controls')
  }
  const separator = path.includes('?') ? '&' : '?'
  const query = `n=${encodeURIComponent(String(page.n))}&last=${encodeURIComponent(page.last)}`
  return `<${path}${separator}${query}>; rel="next"`
}
