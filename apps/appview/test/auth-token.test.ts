import assert from 'node:assert/strict'
import { createHmac, createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { captureLogger } from '@atcr/core/log'
import { OciError, parseAuthChallenges } from '@atcr/core/oci'
import { startNetwork, staticDns, type TestAccount, type TestNetwork } from '@atcr/testkit'
import type { PasswordSession } from '@atproto/lex-password-session'
import { SignJWT } from 'jose'
import { clientSafeDid } from '../src/names.ts'
import {
  type AuthAppView,
  accessOf,
  basic,
  endPdsSession,
  getToken,
  requestWith,
  startAuthAppView,
} from './auth-harness.ts'

const DEFAULT_HOLD = 'did:web:hold01.registry.test'

describe('/auth/token and registry tokens', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let carol: TestAccount
  let dataDir: string
  let appview: AuthAppView
  const logs = captureLogger()

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    carol = await net.pds.createAccount('carol.test')
    // Handles resolve by DNS TXT from a table; no name server is asked.
    const dns = staticDns({
      txt: Object.fromEntries(
        [alice, bob, carol].map((a) => [`_atproto.${a.handle}`, [`did=${a.did}`]]),
      ),
    })
    dataDir = await mkdtemp(join(tmpdir(), 'atcr-appview-auth-'))
    appview = await startAuthAppView({
      dataDir,
      plcUrl: net.plc.url,
      dns,
      logs,
      defaultHoldDid: DEFAULT_HOLD,
    })
  })
  after(async () => {
    await appview?.close()
    await net?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })
  // Logs are kept for the whole file (the last test reads them all); shown when a test fails.
  // (Node 24 has TestContext.passed; the installed @types/node does not declare it yet.)
  afterEach((t) => {
    if (!(t as unknown as { passed: boolean }).passed)
      process.stderr.write(`--- logs up to "${t.name}" ---\n${logs.text()}`)
  })

  it('gives anonymous callers pull only, whatever they ask for', async () => {
    const res = await getToken(appview.url, {
      scopes: [`repository:${alice.did}/app:pull,push`, 'registry:catalog:*'],
    })
    assert.equal(res.status, 200)
    assert.equal(res.body.token, res.body.access_token)
    assert.equal(res.body.expires_in, 300)
    assert.ok(Math.abs(Date.parse(res.body.issued_at as string) - Date.now()) < 5000)
    assert.deepEqual(accessOf(res.body.token), [
      `repository:${alice.did}/app:pull`,
      'registry:catalog:*',
    ])
    const caller = await appview.ctx.auth.authenticate(requestWith(`Bearer ${res.body.token}`))
    assert.equal(caller.did, null)
    assert.deepEqual(
      caller.access.map((s) => [s.name, [...s.actions]]),
      [
        [`${alice.did}/app`, ['pull']],
        ['catalog', ['*']],
      ],
    )
  })

  it('grants the owner push and delete on their own names in every spelling, pull elsewhere', async () => {
    const res = await getToken(appview.url, {
      authorization: basic(alice.did, alice.appPassword),
      scopes: [
        `repository:${alice.did}/app:pull,push`,
        `repository:${clientSafeDid(alice.did)}/tools/app:push,pull,delete`,
        'repository:alice.test/web:*',
        `repository:${clientSafeDid(bob.did)}/app:pull,push`,
        'repository:bob.test/app:push',
        'repository:Not_A_Name/app:pull',
        'repository:noidentity:pull',
      ],
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(accessOf(res.body.token), [
      `repository:${alice.did}/app:pull,push`,
      `repository:${clientSafeDid(alice.did)}/tools/app:pull,push,delete`,
      'repository:alice.test/web:pull,push,delete',
      `repository:${clientSafeDid(bob.did)}/app:pull`,
    ])
    const caller = await appview.ctx.auth.authenticate(requestWith(`Bearer ${res.body.token}`))
    assert.equal(caller.did, alice.did)
  })

  it('signs in with a handle as the username too, and with no scope (docker login)', async () => {
    const res = await getToken(appview.url, {
      authorization: basic('Bob.Test', bob.appPassword),
      scopes: [`repository:bob.test/app:push`],
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(accessOf(res.body.token), ['repository:bob.test/app:push'])
    const login = await getToken(appview.url, { authorization: basic('bob.test', bob.appPassword) })
    assert.equal(login.status, 200)
    assert.deepEqual(accessOf(login.body.token), [])
    const caller = await appview.ctx.auth.authenticate(requestWith(`Bearer ${login.body.token}`))
    assert.equal(caller.did, bob.did)
  })

  it('refuses a wrong password or an unknown user with 401 and a Basic challenge', async () => {
    const cases = [
      basic(alice.did, 'wrong-password'),
      basic('nobody.test', alice.appPassword),
      basic('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', alice.appPassword),
      'Basic !!!',
      'Bearer something',
    ]
    for (const authorization of cases) {
      const res = await getToken(appview.url, {
        authorization,
        scopes: [`repository:${alice.did}/app:push`],
      })
      assert.equal(res.status, 401, authorization)
      const [challenge] = parseAuthChallenges(res.headers.get('www-authenticate') ?? '')
      assert.equal(challenge?.scheme, 'Basic')
      assert.equal(challenge?.params.realm, 'registry.test:5000')
      const errors = res.body.errors as { code: string; message: string }[]
      assert.equal(errors[0]?.code, 'UNAUTHORIZED')
      assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8')
    }
  })

  it('refuses the account password: only app passwords are kept', async () => {
    const res = await getToken(appview.url, { authorization: basic(carol.did, carol.password) })
    assert.equal(res.status, 401)
    const errors = res.body.errors as { message: string }[]
    assert.match(errors[0]!.message, /app password/)
    await assert.rejects(appview.ctx.sessions.agentFor(carol.did), { name: 'NoSessionError' })
  })

  it('answers 400 to scopes that do not parse', async () => {
    for (const scope of ['repository', 'repository:name', 'repo sitory:a/b:pull', 'x:a/b:PULL']) {
      const res = await getToken(appview.url, { scopes: [scope] })
      assert.equal(res.status, 400, scope)
      const errors = res.body.errors as { code: string }[]
      assert.equal(errors[0]?.code, 'QUERY_PARAMETER_INVALID')
    }
  })

  it('accepts space-separated scopes in one parameter', async () => {
    const res = await getToken(appview.url, {
      scopes: [`repository:${alice.did}/a:pull repository:${alice.did}/b:pull`],
    })
    assert.deepEqual(accessOf(res.body.token), [
      `repository:${alice.did}/a:pull`,
      `repository:${alice.did}/b:pull`,
    ])
  })

  it('answers the OAuth2 password grant (POST, form) that containerd sends', async () => {
    const form = new URLSearchParams({
      grant_type: 'password',
      username: alice.did,
      password: alice.appPassword,
      service: 'registry.test:5000',
      client_id: 'containerd-client',
      access_type: 'online',
      scope: `repository:${alice.did}/app:pull,push repository:bob.test/app:pull,push`,
    })
    const res = await fetch(`${appview.url}/auth/token`, { method: 'POST', body: form })
    assert.equal(res.status, 200)
    const body = (await res.json()) as Record<string, unknown>
    assert.equal(body.access_token, body.token)
    assert.equal(body.scope, `repository:${alice.did}/app:pull,push repository:bob.test/app:pull`)
    const caller = await appview.ctx.auth.authenticate(requestWith(`Bearer ${body.access_token}`))
    assert.equal(caller.did, alice.did)

    form.set('password', 'wrong')
    const wrong = await fetch(`${appview.url}/auth/token`, { method: 'POST', body: form })
    assert.equal(wrong.status, 401)
    form.set('grant_type', 'refresh_token')
    const refresh = await fetch(`${appview.url}/auth/token`, { method: 'POST', body: form })
    assert.equal(refresh.status, 400)
    assert.equal(((await refresh.json()) as { errors: unknown[] }).errors.length, 1)
  })

  it('takes no registry token it did not sign, or one past its time: alg none, key confusion, a scope widened by hand', async () => {
    const pem = await readFile(join(dataDir, 'auth', 'private-key.pem'), 'utf8')
    const ourKey = (await import('node:crypto')).createPrivateKey(pem)
    const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const now = Math.floor(Date.now() / 1000)
    const mint = (key: typeof ourKey, claims: { iat: number; exp: number; aud?: string }) =>
      new SignJWT({ access: [{ type: 'repository', name: `${alice.did}/app`, actions: ['push'] }] })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
        .setIssuer('registry.test:5000')
        .setAudience(claims.aud ?? 'registry.test:5000')
        .setSubject(alice.did)
        .setIssuedAt(claims.iat)
        .setExpirationTime(claims.exp)
        .setJti(randomUUID())
        .sign(key)

    // Our key, valid times: accepted (the control for the refusals below).
    const good = await mint(ourKey, { iat: now, exp: now + 60 })
    const caller = await appview.ctx.auth.authenticate(requestWith(`Bearer ${good}`))
    assert.equal(caller.did, alice.did)

    const [header, payload, signature] = good.split('.')
    const base64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())
    // The classic key-confusion attack: an HMAC whose secret is the verifier's public key.
    const publicPem = createPublicKey(ourKey).export({ type: 'spki', format: 'pem' }).toString()
    const hs256 = (secret: string, body: string) => {
      const signed = `${base64({ alg: 'HS256', typ: 'JWT' })}.${body}`
      return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`
    }
    const widened = {
      ...claims,
      access: [{ type: 'repository', name: `${bob.did}/app`, actions: ['push', 'delete'] }],
    }
    const refused = {
      'alg none': `${base64({ alg: 'none', typ: 'JWT' })}.${payload}.`,
      'alg none, signature kept': `${base64({ alg: 'none', typ: 'JWT' })}.${payload}.${signature}`,
      'HS256 keyed with our public key': hs256(publicPem, payload!),
      'scope widened by hand': `${header}.${base64(widened)}.${signature}`,
      expired: await mint(ourKey, { iat: now - 600, exp: now - 300 }),
      forged: await mint(otherKey, { iat: now, exp: now + 60 }),
      'other audience': await mint(ourKey, { iat: now, exp: now + 60, aud: 'elsewhere' }),
      tampered: `${good.slice(0, -4)}AAAA`,
      garbage: 'not-a-jwt',
    }
    for (const [what, token] of Object.entries(refused)) {
      await assert.rejects(
        appview.ctx.auth.authenticate(requestWith(`Bearer ${token}`)),
        (error: unknown) => {
          assert.ok(error instanceof OciError, what)
          assert.equal(error.status, 401, what)
          const [challenge] = parseAuthChallenges(error.headers['WWW-Authenticate'] ?? '')
          assert.equal(challenge?.scheme, 'Bearer')
          assert.equal(challenge?.params.realm, 'http://registry.test:5000/auth/token')
          assert.equal(challenge?.params.service, 'registry.test:5000')
          assert.equal(challenge?.params.error, 'invalid_token')
          return true
        },
      )
    }
    const anonymous = await appview.ctx.auth.authenticate(requestWith())
    assert.deepEqual(anonymous, { did: null, access: [] })
  })

  it('builds Bearer challenges naming the scope a request needs', () => {
    const error = appview.ctx.auth.challenge(
      [
        {
          type: 'repository',
          name: `${alice.did}/app`,
          actions: new Set(['pull', 'push']),
        },
      ],
      'insufficient_scope',
    )
    assert.equal(error.status, 401)
    assert.equal(
      error.headers['WWW-Authenticate'],
      `Bearer realm="http://registry.test:5000/auth/token",service="registry.test:5000",scope="repository:${alice.did}/app:pull,push",error="insufficient_scope"`,
    )
  })

  it('creates the sailor profile once, with the default hold, and never overwrites one', async () => {
    const read = async (account: TestAccount) => {
      const { data } = await account.agent.com.atproto.repo.getRecord({
        repo: account.did,
        collection: 'io.atcr.sailor.profile',
        rkey: 'self',
      })
      return data
    }
    // alice signed in above: her profile was made then.
    const made = await read(alice)
    assert.equal((made.value as { defaultHold?: string }).defaultHold, DEFAULT_HOLD)
    assert.ok(Date.parse((made.value as { createdAt: string }).createdAt) <= Date.now())

    // She opts out of the default hold; later logins leave her choice alone.
    await alice.agent.com.atproto.repo.putRecord({
      repo: alice.did,
      collection: 'io.atcr.sailor.profile',
      rkey: 'self',
      record: { $type: 'io.atcr.sailor.profile', createdAt: new Date().toISOString() },
    })
    const edited = await read(alice)
    assert.equal(
      (await getToken(appview.url, { authorization: basic(alice.did, alice.appPassword) })).status,
      200,
    )
    assert.equal((await read(alice)).cid, edited.cid)

    // A user who had a profile before their first login keeps it as it was.
    const dave = await net.pds.createAccount('dave.test')
    const own = {
      $type: 'io.atcr.sailor.profile',
      createdAt: '2024-01-01T00:00:00.000Z',
      defaultHold: 'did:web:dave-hold.registry.test',
    }
    await dave.agent.com.atproto.repo.createRecord({
      repo: dave.did,
      collection: 'io.atcr.sailor.profile',
      rkey: 'self',
      record: own,
    })
    const before = await read(dave)
    assert.equal(
      (await getToken(appview.url, { authorization: basic(dave.did, dave.appPassword) })).status,
      200,
    )
    assert.equal((await read(dave)).cid, before.cid)
  })

  it('asks the PDS once for repeated sign-ins, and still refuses every wrong password', async () => {
    let createSessions = 0
    const count = (request: { url?: string }) => {
      if (request.url?.startsWith('/xrpc/com.atproto.server.createSession')) createSessions++
    }
    net.pds.pds.server!.on('request', count)
    try {
      const erin = await net.pds.createAccount('erin.test')
      const token = (password: string) =>
        getToken(appview.url, {
          authorization: basic(erin.did, password),
          scopes: [`repository:${erin.did}/app:pull,push`],
        })
      // A push asks for several tokens; only the first goes to the PDS.
      for (let i = 0; i < 3; i++) assert.equal((await token(erin.appPassword)).status, 200)
      assert.equal(createSessions, 1)

      // A wrong password is checked at the PDS each time, and refused each time...
      for (let i = 1; i <= 2; i++) {
        const wrong = await token(`${erin.appPassword}x`)
        assert.equal(wrong.status, 401)
        assert.equal(createSessions, 1 + i)
      }
      // ...and locks nobody out: the right one is still let in.
      const right = await token(erin.appPassword)
      assert.equal(right.status, 200)
      assert.deepEqual(accessOf(right.body.token), [`repository:${erin.did}/app:pull,push`])
      assert.equal(createSessions, 3)

      // Concurrent requests of a new sign-in share one createSession.
      const frank = await net.pds.createAccount('frank.test')
      const before = createSessions
      const answers = await Promise.all(
        Array.from({ length: 4 }, () =>
          getToken(appview.url, { authorization: basic(frank.did, frank.appPassword) }),
        ),
      )
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 200, 200],
      )
      assert.equal(createSessions, before + 1)

      // The stored session ends (the user signed out everywhere, the refresh is refused):
      // the next sign-in goes to the PDS again.
      const agent = (await appview.ctx.sessions.agentFor(erin.did)) as PasswordSession
      await endPdsSession(net.pds.url, agent.session.refreshJwt)
      await assert.rejects(agent.refresh())
      await assert.rejects(appview.ctx.sessions.agentFor(erin.did), { name: 'NoSessionError' })
      const again = createSessions
      assert.equal((await token(erin.appPassword)).status, 200)
      assert.equal(createSessions, again + 1)
      assert.equal((await token(erin.appPassword)).status, 200)
      assert.equal(createSessions, again + 1)
    } finally {
      net.pds.pds.server!.off('request', count)
    }
  })

  it('keeps its keys private and writes no credential to the logs', async () => {
    for (const file of ['private-key.pem', 'session.key']) {
      const info = await stat(join(dataDir, 'auth', file))
      assert.equal(info.mode & 0o777, 0o600, file)
    }
    const text = logs.text()
    for (const secret of [alice.appPassword, bob.appPassword, carol.password]) {
      assert.ok(!text.includes(secret))
    }
  })
})
