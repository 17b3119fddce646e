// The one error handler of the AppView's OCI surfaces (/v2 and /auth/token): every error
// leaves as the OCI JSON envelope, with the status and headers its code carries.
import { isDatabaseUnreachable } from '@atcr/core/database'
import { OciError, ociErrorResponse } from '@atcr/core/oci'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { NoSessionError } from './auth/types.ts'
import type { AppViewContext } from './context.ts'

export function ociErrorHandler(ctx: AppViewContext) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const oci = toOciError(ctx, error)
    const response = ociErrorResponse(oci)
    if (response.status >= 500) request.log.error({ err: error }, 'request failed')
    return reply.code(response.status).headers(response.headers).send(response.body)
  }
}

function toOciError(ctx: AppViewContext, error: FastifyError): unknown {
  if (error instanceof OciError) return error
  // The registry holds no usable PDS session for the caller: they must sign in again.
  if (error instanceof NoSessionError) return ctx.auth.challenge(undefined, 'invalid_token')
  const status = error.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code =
      status === 413 ? 'SIZE_INVALID' : status === 429 ? 'TOOMANYREQUESTS' : 'UNSUPPORTED'
    return new OciError(code, { status, message: error.message })
  }
  // The database went away (a restart, a failover): the client may retry, as for a hold.
  if (isDatabaseUnreachable(error)) {
    return new OciError('UNAVAILABLE', {
      message: 'the registry database cannot be reached right now; retry shortly',
    })
  }
  return error
}
