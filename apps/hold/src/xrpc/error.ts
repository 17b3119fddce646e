import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'

/**
 * An error an XRPC client may see: an HTTP status, an error name (a lexicon-declared
 * error such as `RecordNotFound`, or a generic one such as `InvalidRequest`) and a message.
 * Everything the hold's XRPC surface answers with goes through {@link xrpcErrorHandler}.
 */
export class XrpcError extends Error {
  readonly status: number
  readonly error: string

  constructor(status: number, error: string, message?: string, options?: ErrorOptions) {
    super(message ?? error, options)
    this.name = 'XrpcError'
    this.status = status
    this.error = error
  }
}

/** 400: a bad parameter or body, or a lexicon-declared error (pass its name). */
export function invalidRequest(message: string, error = 'InvalidRequest'): XrpcError {
  return new XrpcError(400, error, message)
}

/** 401: no or unusable credentials. */
export function authRequired(
  message = 'Authentication Required',
  error = 'AuthRequired',
): XrpcError {
  return new XrpcError(401, error, message)
}

/** 403: authenticated, but not allowed. */
export function forbidden(message = 'Forbidden', error = 'Forbidden'): XrpcError {
  return new XrpcError(403, error, message)
}

export interface XrpcErrorBody {
  error: string
  message: string
}

/** The status and body an error is answered with; internals of unknown errors never leak. */
export function toXrpcErrorResponse(err: unknown): { status: number; body: XrpcErrorBody } {
  if (err instanceof XrpcError) {
    return { status: err.status, body: { error: err.error, message: err.message } }
  }
  const fastifyErr = err as Partial<FastifyError> | null
  if (fastifyErr?.validation) {
    return { status: 400, body: { error: 'InvalidRequest', message: fastifyErr.message ?? '' } }
  }
  // Fastify's own client errors (malformed JSON, unsupported media type, body too large).
  const status = fastifyErr?.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const error = status === 413 ? 'PayloadTooLarge' : 'InvalidRequest'
    return { status, body: { error, message: fastifyErr?.message ?? error } }
  }
  return {
    status: 500,
    body: { error: 'InternalServerError', message: 'Internal Server Error' },
  }
}

/** The one fastify error handler of the hold's XRPC routes: writes `{error, message}`. */
export function xrpcErrorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toXrpcErrorResponse(err)
  if (status >= 500) request.log.error({ err }, 'xrpc handler failed')
  void reply.status(status).type('application/json; charset=utf-8').send(body)
}

/** Not-found handler: an unknown `/xrpc/` method is `MethodNotImplemented` (501). */
export function xrpcNotFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  const path = request.url.split('?')[0] ?? ''
  const err = path.startsWith('/xrpc/')
    ? new XrpcError(501, 'MethodNotImplemented', `Method Not Implemented: ${path.slice(6)}`)
    : new XrpcError(404, 'NotFound', 'Not Found')
  xrpcErrorHandler(err, request, reply)
}
