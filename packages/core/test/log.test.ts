import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  captureLogger,
  createLogger,
  type LogDestination,
  silentLogger,
  subsystemLogger,
} from '../src/log/index.ts'

function memory(): { destination: LogDestination; text: () => string } {
  const lines: string[] = []
  return { destination: { write: (l: string) => void lines.push(l) }, text: () => lines.join('') }
}

describe('logger', () => {
  test('credentials in request and response logs never reach the output', () => {
    const out = memory()
    const root = createLogger({ name: 'atcr-test', destination: out.destination })
    const log = subsystemLogger(root, 'pds')
    log.info(
      {
        req: {
          method: 'POST',
          url: '/xrpc/com.atproto.server.createSession',
          headers: {
            authorization: 'Bearer eyJ-secret-bearer',
            cookie: 'session=secret-cookie',
            'user-agent': 'docker/27.0',
          },
        },
        res: { statusCode: 200, headers: { 'set-cookie': ['session=secret-set-cookie'] } },
      },
      'request completed',
    )
    log.warn(
      {
        password: 'secret-password',
        body: { identifier: 'alice.test', password: 'secret-nested-password' },
        session: { accessJwt: 'secret-access-jwt', refreshJwt: 'secret-refresh-jwt' },
        headers: { Authorization: 'Basic secret-basic' },
        err: { response: { headers: { authorization: 'Bearer secret-upstream' } } },
      },
      'login failed',
    )
    const text = out.text()
    assert.doesNotMatch(text, /secret-/)
    assert.doesNotMatch(text, /eyJ/)

    const [request, login] = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    assert.equal(request.subsystem, 'pds')
    assert.equal(request.name, 'atcr-test')
    assert.equal(request.msg, 'request completed')
    assert.equal(request.level, 'info')
    assert.equal(request.req.url, '/xrpc/com.atproto.server.createSession')
    assert.equal(request.req.headers['user-agent'], 'docker/27.0')
    assert.equal(request.req.headers.authorization, '[redacted]')
    assert.equal(request.res.statusCode, 200)
    assert.equal(login.body.identifier, 'alice.test')
    assert.equal(login.body.password, '[redacted]')
    assert.equal(login.level, 'warn')
  })

  test('lines below the level are dropped', () => {
    const out = memory()
    const log = createLogger({ level: 'warn', destination: out.destination })
    log.info('not shown')
    log.error('shown')
    assert.doesNotMatch(out.text(), /not shown/)
    assert.match(out.text(), /"msg":"shown"/)
  })

  test('the silent logger writes nothing', () => {
    const log = silentLogger()
    assert.equal(log.isLevelEnabled('fatal'), false)
  })
})

describe('logged errors', () => {
  test("keep an atproto client's failed answer as its status and URL, its method as the NSID", () => {
    const logs = captureLogger()
    // As lex-client's XrpcResponseError holds them: the Response and the method's schema.
    const response = new Response('{"error":"ExpiredToken"}', {
      status: 400,
      headers: { 'www-authenticate': 'Bearer secret-challenge' },
    })
    const error = Object.assign(new Error('Token has expired'), {
      response,
      method: { type: 'procedure', nsid: 'com.atproto.server.refreshSession', input: {} },
      error: 'ExpiredToken',
    })
    logs.logger.info({ err: error }, 'refresh failed')
    const [record] = logs.records()
    const err = record?.err as Record<string, unknown>
    assert.equal(err.message, 'Token has expired')
    assert.equal(err.error, 'ExpiredToken')
    assert.deepEqual(err.response, { status: 400, url: '' })
    assert.equal(err.method, 'com.atproto.server.refreshSession')
    assert.doesNotMatch(logs.text(), /secret-/)
  })
})

describe('captured logs', () => {
  test('records keep what was logged, redacted', () => {
    const logs = captureLogger()
    subsystemLogger(logs.logger, 'gc').debug({ token: 'secret-token', blobs: 3 }, 'swept')
    assert.deepEqual(
      logs.records().map((r) => [r.subsystem, r.msg, r.blobs, r.token]),
      [['gc', 'swept', 3, '[redacted]']],
    )
  })

  test('are shown on stderr for a failed test only', (t) => {
    const logs = captureLogger()
    const written: string[] = []
    t.mock.method(process.stderr, 'write', (chunk: string) => {
      written.push(chunk)
      return true
    })
    logs.logger.info('during a passing test')
    logs.flushIfFailed({ passed: true, name: 'passing' })
    logs.logger.info('during a failing test')
    logs.flushIfFailed({ passed: false, name: 'failing' })
    t.mock.restoreAll()
    const text = written.join('')
    assert.match(text, /logs of failed test "failing"/)
    assert.match(text, /during a failing test/)
    assert.doesNotMatch(text, /during a passing test/)
    assert.deepEqual(logs.records(), [])
  })
})
