// The OCI error-code registry and the one JSON envelope the distribution API answers with.
// Statuses are the ones CNCF distribution registers (registry/api/errcode); a route that
// needs another status for the same code passes `status` when it throws.

export interface OciErrorDescriptor {
  readonly message: string
  readonly status: number
}

export const OCI_ERROR_CODES = {
  // The codes of the OCI distribution spec.
  BLOB_UNKNOWN: { message: 'blob unknown to registry', status: 404 },
  BLOB_UPLOAD_INVALID: { message: 'blob upload invalid', status: 404 },
  BLOB_UPLOAD_UNKNOWN: { message: 'blob upload unknown to registry', status: 404 },
  DIGEST_INVALID: { message: 'provided digest did not match uploaded content', status: 400 },
  MANIFEST_BLOB_UNKNOWN: {
    message: 'manifest references a manifest or blob unknown to registry',
    status: 400,
  },
  MANIFEST_INVALID: { message: 'manifest invalid', status: 400 },
  MANIFEST_UNKNOWN: { message: 'manifest unknown to registry', status: 404 },
  NAME_INVALID: { message: 'invalid repository name', status: 400 },
  NAME_UNKNOWN: { message: 'repository name not known to registry', status: 404 },
  SIZE_INVALID: { message: 'provided length did not match content length', status: 400 },
  UNAUTHORIZED: { message: 'authentication required', status: 401 },
  DENIED: { message: 'requested access to the resource is denied', status: 403 },
  UNSUPPORTED: { message: 'the operation is unsupported', status: 405 },
  TOOMANYREQUESTS: { message: 'too many requests', status: 429 },
  // Codes CNCF distribution adds, which clients know from it.
  RANGE_INVALID: { message: 'invalid content range', status: 416 },
  TAG_INVALID: { message: 'invalid tag', status: 400 },
  MANIFEST_UNVERIFIED: { message: 'manifest failed signature verification', status: 400 },
  PAGINATION_NUMBER_INVALID: { message: 'invalid number of results requested', status: 400 },
  QUERY_PARAMETER_INVALID: { message: 'invalid query parameter value', status: 400 },
  UNAVAILABLE: { message: 'service unavailable', status: 503 },
  UNKNOWN: { message: 'unknown error', status: 500 },
} as const satisfies Record<string, OciErrorDescriptor>

export type OciErrorCode = keyof typeof OCI_ERROR_CODES

export function isOciErrorCode(value: unknown): value is OciErrorCode {
  return typeof value === 'string' && Object.hasOwn(OCI_ERROR_CODES, value)
}

export interface OciErrorOptions {
  /** Replaces the code's default message; say what was wrong, never how the server is built. */
  message?: string
  /** Any JSON value that helps the client; written to the envelope as `detail`. */
  detail?: unknown
  /** Replaces the code's default HTTP status. */
  status?: number
  /** Response headers that belong to this error, e.g. WWW-Authenticate or Retry-After. */
  headers?: Readonly<Record<string, string>>
  /** The underlying failure; kept for logs, never written to the response. */
  cause?: unknown
}

/** An error a registry route throws; the surface turns it into the envelope once. */
export class OciError extends Error {
  override readonly name: string = 'OciError'
  readonly code: OciErrorCode
  readonly status: number
  readonly detail: unknown
  readonly headers: Readonly<Record<string, string>>

  constructor(code: OciErrorCode, options: OciErrorOptions = {}) {
    const descriptor = OCI_ERROR_CODES[code]
    super(
      options.message ?? descriptor.message,
      options.cause === undefined ? undefined : { cause: options.cause },
    )
    this.code = code
    this.status = options.status ?? descriptor.status
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }
}

export function isOciError(value: unknown): value is OciError {
  return value instanceof OciError
}

/**
 * Any thrown value as an OciError: OciErrors pass through; anything else becomes UNKNOWN/500
 * with the default message, the original kept only as `cause` so that nothing internal leaks.
 */
export function toOciError(value: unknown): OciError {
  if (value instanceof OciError) return value
  return new OciError('UNKNOWN', { cause: value })
}

export interface OciErrorEntry {
  code: OciErrorCode
  message: string
  detail?: unknown
}

export interface OciErrorBody {
  errors: OciErrorEntry[]
}

export interface OciErrorResponse {
  status: number
  headers: Record<string, string>
  body: OciErrorBody
}

/** The response for one failure: `{errors: [{code, message, detail?}]}` and its status. */
export function ociErrorResponse(error: unknown): OciErrorResponse {
  return ociErrorsResponse([error])
}

/**
 * The response for several failures at once. The status is the first error's, as in CNCF
 * distribution; headers of all errors are merged, the first error's winning.
 */
export function ociErrorsResponse(errors: readonly unknown[]): OciErrorResponse {
  const ociErrors = errors.length === 0 ? [toOciError(undefined)] : errors.map(toOciError)
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
  for (const error of ociErrors.toReversed()) Object.assign(headers, lowerCaseKeys(error.headers))
  return {
    status: ociErrors[0]!.status,
    headers,
    body: { errors: ociErrors.map(toEntry) },
  }
}

function toEntry(error: OciError): OciErrorEntry {
  const entry: OciErrorEntry = { code: error.code, message: error.message }
  if (error.detail !== undefined) entry.detail = error.detail
  return entry
}

function lowerCaseKeys(headers: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]))
}
