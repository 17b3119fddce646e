// The device's side of the device flow (RFC 8628 shape): POST /auth/device/code and POST
// /auth/device/token, JSON answers, errors as RFC 6749 `{error, error_description}`.
// Limited per client address (@fastify/rate-limit); polling faster than `interval` is
// answered slow_down.
import formbody from '@fastify/formbody'
import type { FastifyError, FastifyInstance } from 'fastify'
import type { AppViewContext } from '../context.ts'

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
const MAX_CLIENT_NAME = 100

const DESCRIPTIONS = {
  authorization_pending: 'the user has not approved this device yet',
  slow_down: 'polling too fast: wait longer between requests',
  expired_token: 'the device code expired: start again',
  access_denied: 'the user denied this device',
  invalid_grant: 'unknown device code, or its secret was issued already',
} as const

function field(body: unknown, name: string): string {
  const value = (body as Record<string, unknown> | null | undefined)?.[name]
  return typeof value === 'string' ? value : ''
}

export async function registerDeviceRoutes(
  app: FastifyInstance,
  ctx: AppViewContext,
): Promise<void> {
  await app.register(formbody, { bodyLimit: 16 * 1024 })
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const status = error.statusCode ?? 500
    if (status >= 500) request.log.error({ err: error }, 'device request failed')
    const code = status === 429 ? 'slow_down' : status >= 500 ? 'server_error' : 'invalid_request'
    return reply
      .code(status)
      .header('cache-control', 'no-store')
      .send({ error: code, error_description: status >= 500 ? 'server error' : error.message })
  })
  const { rate_limit } = ctx.config.auth
  const config = {
    config: {
      rateLimit: { max: rate_limit.device_per_address, timeWindow: rate_limit.window * 1000 },
    },
  }
  const base = ctx.config.server.base_url

  app.post('/auth/device/code', config, async (request, reply) => {
    const name =
      field(request.body, 'client_name').trim().slice(0, MAX_CLIENT_NAME) || 'unnamed device'
    const started = await ctx.devices.start(name)
    const verification = new URL('/device', base)
    const complete = new URL(verification)
    complete.searchParams.set('user_code', started.userCode)
    return reply.header('cache-control', 'no-store').send({
      device_code: started.deviceCode,
      user_code: started.userCode,
      verification_uri: verification.href,
      verification_uri_complete: complete.href,
      expires_in: started.expiresIn,
      interval: started.interval,
    })
  })

  app.post('/auth/device/token', config, async (request, reply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
    if (field(request.body, 'grant_type') !== DEVICE_CODE_GRANT) {
      return reply.code(400).send({
        error: 'unsupported_grant_type',
        error_description: `grant_type must be ${DEVICE_CODE_GRANT}`,
      })
    }
    const deviceCode = field(request.body, 'device_code')
    if (!deviceCode) {
      return reply
        .code(400)
        .send({ error: 'invalid_request', error_description: 'device_code is missing' })
    }
    const result = await ctx.devices.poll(deviceCode)
    if ('error' in result) {
      return reply
        .code(400)
        .send({ error: result.error, error_description: DESCRIPTIONS[result.error] })
    }
    request.log.info({ did: result.did }, 'device secret issued')
    return reply.send({
      access_token: result.secret,
      token_type: 'device_secret',
      did: result.did,
      handle: result.handle,
    })
  })
}
