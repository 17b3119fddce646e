// App-password sessions against a PDS that refuses, fails or moves: how a login's failure
// is told to the user, and what a refresh that fails does to the stored session. A stand-in
// PDS on loopback answers what each test sets (the real PDS is in auth-sessions.test.ts).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { createGuardedFetch, type GuardedFetch } from '@atcr/core/identity'
import { captureLogger } from '@atcr/core/log'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { SessionStore, type StoredSession } from '../src/auth/session-store.ts'
import {
  AccountPasswordError,
  PdsLoginRefusedError,
  PdsRateLimitedError,
  PdsSessions,
  PdsUnavailableError,
} from '../src/auth/sessions.ts'
import { NoSessionError } from '../src/auth/types.ts'
import { type AppViewDatabase, openAppViewDatabase } from '../src/db/index.ts'

const DID = 'did:plc:carolcarolcarolcarolcaro'

interface Answer {
  status: number
  body: unknown
}

/** A JWT-shaped token (the stand-in PDS does not check signatures) running out in `ttl` s. */
function jwt(scope: string, ttl: number): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const exp = Math.floor(Date.now() / 1000) + ttl
  const nonce = randomBytes(6).toString('hex')
  return `${part({ alg: 'HS256', typ: 'at+jwt' })}.${part({ scope, sub: DID, exp, nonce })}.c2ln`
}

interface SessionBody {
  accessJwt: string
  refreshJwt: string
}

function sessionBody(
  options: { did?: string; scope?: string; pds?: string } = {},
): SessionBody & Record<string, unknown> {
  const did = options.did ?? DID
  return {
    did,
    handle: 'carol.test',
    accessJwt: jwt(options.scope ?? 'com.atproto.appPass', 3600),
    refreshJwt: jwt('com.atproto.refresh', 86_400),
    active: true,
    emailConfirmed: true,
    didDoc: {
      id: did,
      service: options.pds
        ? [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: options.pds }]
        : [],
    },
  }
}

const xrpcError = (status: number, error: string): Answer => ({
  status,
  body: { error, message: `${error} (stand-in PDS)` },
})

interface StandIn {
  url: string
  /** The methods asked for, in order. */
  calls: string[]
  close(): Promise<void>
}

/** A stand-in PDS on loopback answering what `answers()` holds for each method. */
async function standIn(answers: () => Record<string, () => Answer>): Promise<StandIn> {
  const calls: string[] = []
  const server = createServer((request: IncomingMessage, response) => {
    const method = new URL(request.url ?? '/', 'http://pds').pathname.replace('/xrpc/', '')
    calls.push(method)
    request.resume()
    const answer = answers()[method]?.() ?? xrpcError(404, 'MethodNotImplemented')
    response.writeHead(answer.status, { 'content-type': 'application/json' })
    response.end(JSON.stringify(answer.body))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

describe('PDS sessions when the PDS refuses, fails or moves', () => {
  const logs = captureLogger()
  let dir: string
  let db: AppViewDatabase
  let store: SessionStore
  let guardedFetch: GuardedFetch
  let pds: StandIn
  let pdsUrl: string
  /** What the stand-in PDSes answer, by method; a method not listed answers 404. */
  let answers: Record<string, () => Answer>
  let ended: string[]
  let sessions: PdsSessions

  before(async () => {
    dir = await makeTempDir('atcr-pds-sessions-')
    db = await openAppViewDatabase({ url: null, sqlitePath: join(dir, 'appview.sqlite') })
    store = new SessionStore(db, randomBytes(32))
    guardedFetch = createGuardedFetch({ mode: 'dev' })
    pds = await standIn(() => answers)
    pdsUrl = pds.url
  })
  beforeEach(async () => {
    answers = {}
    pds.calls.length = 0
    ended = []
    await store.delete(DID)
    sessions = new PdsSessions({
      store,
      fetch: guardedFetch,
      logger: logs.logger,
      onSessionEnded: (did) => ended.push(did),
    })
  })
  after(async () => {
    await pds?.close()
    await guardedFetch?.close()
    await db?.close()
    if (dir) await removeTempDir(dir)
  })
  afterEach((t) => logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  const login = () => sessions.login({ did: DID, pdsEndpoint: pdsUrl }, 'app-password')

  /** A stored session whose access token has run out, as a restart would find it. */
  const storeExpired = async (): Promise<string> => {
    const session: StoredSession = {
      did: DID,
      handle: 'carol.test',
      pdsEndpoint: pdsUrl,
      accessJwt: jwt('com.atproto.appPass', -3600),
      refreshJwt: jwt('com.atproto.refresh', 86_400),
      active: true,
    }
    return store.save(session)
  }

  it('tells a refused password, a rate limit and a failing or unreachable PDS apart', async () => {
    const cases: [Answer, new (...args: never[]) => Error][] = [
      [xrpcError(401, 'AuthenticationRequired'), PdsLoginRefusedError],
      [xrpcError(400, 'InvalidRequest'), PdsLoginRefusedError],
      [xrpcError(401, 'AuthFactorTokenRequired'), PdsLoginRefusedError],
      [xrpcError(429, 'RateLimitExceeded'), PdsRateLimitedError],
      [xrpcError(500, 'InternalServerError'), PdsUnavailableError],
      [{ status: 200, body: { not: 'a session' } }, PdsUnavailableError],
    ]
    for (const [answer, expected] of cases) {
      answers['com.atproto.server.createSession'] = () => answer
      await assert.rejects(login(), expected, `${answer.status} ${JSON.stringify(answer.body)}`)
    }
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    await assert.rejects(
      sessions.login({ did: DID, pdsEndpoint: `http://127.0.0.1:${port}` }, 'app-password'),
      PdsUnavailableError,
    )
    assert.equal(await store.exists(DID), false)
  })

  it('refuses an answer for another account, and an account password (ending its session)', async () => {
    answers['com.atproto.server.createSession'] = () => ({
      status: 200,
      body: sessionBody({ did: 'did:plc:someoneelsesomeoneelseso' }),
    })
    await assert.rejects(login(), PdsLoginRefusedError)

    answers['com.atproto.server.createSession'] = () => ({
      status: 200,
      body: sessionBody({ scope: 'com.atproto.access' }),
    })
    answers['com.atproto.server.deleteSession'] = () => ({ status: 200, body: {} })
    await assert.rejects(login(), AccountPasswordError)
    assert.ok(pds.calls.includes('com.atproto.server.deleteSession'))
    assert.equal(await store.exists(DID), false)
  })

  it('keeps a session whose refresh failed at the PDS, and stores the next refresh', async () => {
    const sessionId = await storeExpired()
    answers['com.atproto.server.refreshSession'] = () => xrpcError(500, 'InternalServerError')
    await assert.rejects(sessions.agentFor(DID), (error: unknown) => {
      assert.ok(!(error instanceof NoSessionError))
      return true
    })
    assert.equal(await sessions.reconfirm(DID, sessionId), false)
    assert.deepEqual(ended, [])
    assert.equal((await store.load(DID))?.sessionId, sessionId)

    const refreshed = sessionBody()
    answers['com.atproto.server.refreshSession'] = () => ({ status: 200, body: refreshed })
    await sessions.agentFor(DID)
    const row = await store.load(DID)
    assert.equal(row?.sessionId, sessionId)
    assert.equal(row?.session.accessJwt, refreshed.accessJwt)
    assert.equal(row?.session.refreshJwt, refreshed.refreshJwt)
    assert.equal(row?.session.pdsEndpoint, pdsUrl)
  })

  it('stores the PDS a refreshed session names, and goes there next', async () => {
    const moved = await standIn(() => answers)
    try {
      await storeExpired()
      answers['com.atproto.server.refreshSession'] = () => ({
        status: 200,
        body: sessionBody({ pds: `${moved.url}/` }),
      })
      const agent = await sessions.agentFor(DID)
      assert.equal((await store.load(DID))?.session.pdsEndpoint, moved.url)
      answers['com.atproto.server.getSession'] = () => ({ status: 200, body: sessionBody() })
      const path = '/xrpc/com.atproto.server.getSession'
      assert.equal((await agent.fetchHandler(path, { method: 'GET' })).status, 200)
      assert.deepEqual(moved.calls, ['com.atproto.server.getSession'])
    } finally {
      await moved.close()
    }
  })

  for (const [why, answer] of [
    ['ExpiredToken', xrpcError(400, 'ExpiredToken')],
    ['InvalidToken', xrpcError(400, 'InvalidToken')],
    ['a 401', xrpcError(401, 'AuthenticationRequired')],
    ['an answer for another account', { status: 200, body: sessionBody({ did: 'did:plc:x' }) }],
  ] as const) {
    it(`drops a session whose refresh the PDS refused: ${why}`, async () => {
      const sessionId = await storeExpired()
      answers['com.atproto.server.refreshSession'] = () => answer
      await assert.rejects(sessions.agentFor(DID), NoSessionError)
      assert.equal(await store.exists(DID), false)
      assert.ok(ended.includes(DID))
      assert.equal(await sessions.reconfirm(DID, sessionId), false)
    })
  }

  it('reconfirms a session by refreshing it, and not one the PDS refuses', async () => {
    answers['com.atproto.server.createSession'] = () => ({ status: 200, body: sessionBody() })
    const { sessionId } = await login()
    answers['com.atproto.server.refreshSession'] = () => ({ status: 200, body: sessionBody() })
    assert.equal(await sessions.reconfirm(DID, sessionId), true)
    assert.equal(await sessions.reconfirm(DID, 'another-login'), false)
    answers['com.atproto.server.refreshSession'] = () => xrpcError(400, 'ExpiredToken')
    assert.equal(await sessions.reconfirm(DID, sessionId), false)
    assert.equal(await store.exists(DID), false)
    assert.ok(ended.includes(DID))
  })
})
