// The io.atcr.hold upload methods over HTTP (and io.atcr.hold.uploadBlob, beyond them), and the sweeper of abandoned uploads that
// runs while the server does.
import {
  HOLD_UPLOAD_BLOB,
  type InputNsid,
  type InputTypes,
  NSID,
  validateInput,
} from '@atcr/core/lexicons'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { authenticate, requireWrite } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { invalidRequest, xrpcErrorHandler } from '../xrpc/error.ts'
import {
  abortUpload,
  checkPartNumber,
  completeUpload,
  getPartUploadUrl,
  initiateUpload,
  PART_NUMBER_HEADER,
  sweepExpiredUploads,
  UPLOAD_ID_HEADER,
  uploadBlob,
  uploadPart,
} from './service.ts'

const SWEEP_MIN_MS = 1000
const SWEEP_MAX_MS = 15 * 60_000

export async function registerUploadRoutes(app: FastifyInstance, ctx: HoldContext): Promise<void> {
  await app.register(async (scope) => {
    scope.setErrorHandler(xrpcErrorHandler)

    procedure(scope, ctx, NSID.holdInitiateUpload, async (did, input) =>
      initiateUpload(ctx, did, input.digest),
    )
    procedure(
      scope,
      ctx,
      NSID.holdGetPartUploadUrl,
      async (did, input) => getPartUploadUrl(ctx, did, input.uploadId, input.partNumber),
      // The lexicon's own error for a part number out of range, before generic validation.
      (body) => {
        const partNumber = (body as { partNumber?: unknown } | null)?.partNumber
        if (typeof partNumber === 'number') checkPartNumber(partNumber)
      },
    )
    procedure(scope, ctx, NSID.holdCompleteUpload, async (did, input) =>
      completeUpload(ctx, did, input.uploadId, input.digest, input.parts),
    )
    procedure(scope, ctx, NSID.holdAbortUpload, async (did, input) =>
      abortUpload(ctx, did, input.uploadId),
    )
  })

  // uploadPart takes the raw bytes of any media type: no body parsing, the request stream
  // goes to the storage driver as it arrives (memory stays bounded whatever the size).
  await app.register(async (scope) => {
    scope.setErrorHandler(xrpcErrorHandler)
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    scope.route({
      method: ['PUT', 'POST'],
      url: `/xrpc/${NSID.holdUploadPart}`,
      handler: async (request: FastifyRequest) => {
        const caller = await authenticate(ctx, request, NSID.holdUploadPart)
        const did = await requireWrite(ctx, caller)
        const uploadId = singleHeader(request, UPLOAD_ID_HEADER)
        if (!uploadId) throw invalidRequest(`${UPLOAD_ID_HEADER} header missing`, 'InvalidUploadId')
        const partNumber = Number(singleHeader(request, PART_NUMBER_HEADER) ?? Number.NaN)
        const size = declaredLength(request)
        // The body's chunks are fresh copies nobody else reads: storage may free them.
        // Not destroyed when storage stops reading (a refusal): the server closes such
        // connections gently (closeEarlyAnswersGently in server.ts).
        const body = request.raw.iterator({ destroyOnReturn: false })
        return uploadPart(ctx, did, uploadId, partNumber, body, {
          ...(size === undefined ? {} : { size }),
          handOver: true,
        })
      },
    })
    // Beyond the published lexicons (docs/hold.md): a small blob in one call.
    scope.route({
      method: ['PUT', 'POST'],
      url: `/xrpc/${HOLD_UPLOAD_BLOB}`,
      handler: async (request: FastifyRequest) => {
        const caller = await authenticate(ctx, request, HOLD_UPLOAD_BLOB)
        const did = await requireWrite(ctx, caller)
        const digest = (request.query as Record<string, unknown>).digest
        if (typeof digest !== 'string' || digest === '') {
          throw invalidRequest('the digest parameter is missing', 'InvalidDigest')
        }
        const size = declaredLength(request)
        const body = request.raw.iterator({ destroyOnReturn: false })
        return uploadBlob(ctx, did, digest, body, {
          ...(size === undefined ? {} : { size }),
          handOver: true,
        })
      },
    })
  })

  startSweeper(app, ctx)
}

/** A JSON procedure: authenticated writer, lexicon-checked input. */
function procedure<N extends InputNsid>(
  app: FastifyInstance,
  ctx: HoldContext,
  nsid: N,
  handle: (did: string, input: InputTypes[N]) => Promise<unknown>,
  precheck?: (body: unknown) => void,
): void {
  app.post(`/xrpc/${nsid}`, async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = await authenticate(ctx, request, nsid)
    const did = await requireWrite(ctx, caller)
    precheck?.(request.body)
    let input: InputTypes[N]
    try {
      input = validateInput(nsid, request.body ?? {})
    } catch (err) {
      throw invalidRequest(err instanceof Error ? err.message : 'invalid input')
    }
    return reply.send(await handle(did, input))
  })
}

function declaredLength(request: FastifyRequest): number | undefined {
  const length = singleHeader(request, 'content-length')
  return length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined
}

function singleHeader(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()]
  return Array.isArray(value) ? undefined : value
}

/** Sweeps at start and then every quarter of the expiry (within 1 s .. 15 min). */
function startSweeper(app: FastifyInstance, ctx: HoldContext): void {
  const every = Math.min(
    Math.max((ctx.config.uploads.expiry * 1000) / 4, SWEEP_MIN_MS),
    SWEEP_MAX_MS,
  )
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> = Promise.resolve()
  const sweep = () => {
    running = running.then(() =>
      sweepExpiredUploads(ctx).catch((err: unknown) => {
        ctx.logger.error({ err }, 'sweeping abandoned uploads failed')
      }),
    )
  }
  app.addHook('onReady', async () => {
    sweep()
    timer = setInterval(sweep, every)
    timer.unref()
  })
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await running
  })
}
