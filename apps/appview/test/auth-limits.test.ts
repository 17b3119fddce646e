// Abuse limits of /auth/token against a real PLC and PDS: the scope cap, failed handle
// lookups remembered, a revoked app password refused within seconds (while a known one is
// confirmed by refreshing its session, not by createSession), and 429 after 100
// refused sign-ins in a row (without asking the PDS again); device code requests per address
// limited likewise.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { captureLogger } from '@atcr/core/log'
import { startNetwork, staticDns, type TestAccount, type TestNetwork } from '@atcr/testkit'
import { type AuthAppView, basic, getToken, startAuthAppView } from './auth-harness.ts'

describe('/auth/token abuse limits', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let dataDir: string
  let appview: AuthAppView
  let clock = Date.now()
  let txtLookups = 0
  const logs = captureLogger()

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    const dns = staticDns({
      txt: Object.fromEntries([alice, bob].map((a) => [`_atproto.${a.handle}`, [`did=${a.did}`]])),
    })
    const counted = {
      ...dns,
      resolveTxt: (name: string) => {
        txtLookups++
        return dns.resolveTxt(name)
      },
    }
    dataDir = await mkdtemp(join(tmpdir(), 'atcr-appview-limits-'))
    appview = await startAuthAppView({
      dataDir,
      plcUrl: net.plc.url,
      dns: counted,
      logs,
      now: () => clock,
    })
  })
  after(async () => {
    await appview?.close()
    await net?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })
  afterEach((t) => logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it('refuses a request naming more scopes than the cap, before any lookup', async () => {
    const before = txtLookups
    const scopes = Array.from({ length: 300 }, (_, i) => `repository:nobody${i}.test/app:pull`)
    const res = await getToken(appview.url, { scopes })
    assert.equal(res.status, 400)
    const errors = res.body.errors as { code: string; message: string }[]
    assert.equal(errors[0]?.code, 'QUERY_PARAMETER_INVALID')
    assert.match(errors[0]!.message, /at most 32 scopes/)
    assert.equal(txtLookups, before)
  })

  it('looks an unknown handle up once, not again on every repeat', async () => {
    const scopes = Array.from({ length: 30 }, (_, i) => `repository:ghost${i}.test/app:pull`)
    const before = txtLookups
    const first = await getToken(appview.url, {
      authorization: basic(alice.did, alice.appPassword),
      scopes,
    })
    assert.equal(first.status, 200)
    const looked = txtLookups - before
    assert.ok(looked >= 30, `${looked} lookups`)
    const afterFirst = txtLookups
    for (let i = 0; i < 3; i++) {
      const again = await getToken(appview.url, {
        authorization: basic(alice.did, alice.appPassword),
        scopes,
      })
      assert.equal(again.status, 200)
    }
    assert.equal(txtLookups, afterFirst)
    // Past the TTL (60 s by default) they are looked up again.
    clock += 61_000
    await getToken(appview.url, { authorization: basic(alice.did, alice.appPassword), scopes })
    assert.ok(txtLookups - afterFirst >= 30)
  })

  it('refuses a revoked app password within seconds', async () => {
    const created = await bob.agent.com.atproto.server.createAppPassword({ name: 'to-revoke' })
    const password = created.data.password
    assert.equal(
      (await getToken(appview.url, { authorization: basic(bob.did, password) })).status,
      200,
    )
    await bob.agent.com.atproto.server.revokeAppPassword({ name: 'to-revoke' })
    // Within the recheck time (5 s) the sign-in is still remembered; then the PDS is asked.
    clock += 6_000
    const refused = await getToken(appview.url, { authorization: basic(bob.did, password) })
    assert.equal(refused.status, 401)
    // bob's other app password is untouched.
    assert.equal(
      (await getToken(appview.url, { authorization: basic(bob.did, bob.appPassword) })).status,
      200,
    )
  })

  it('lets a known app password in again by refreshing its session, not by createSession', async () => {
    const calls: string[] = []
    const count = (request: { url?: string }) => {
      const method = /^\/xrpc\/com\.atproto\.server\.(createSession|refreshSession)/.exec(
        request.url ?? '',
      )
      if (method) calls.push(method[1]!)
    }
    net.pds.pds.server!.on('request', count)
    try {
      const dave = await net.pds.createAccount('dave.test')
      const signIn = async () =>
        (await getToken(appview.url, { authorization: basic(dave.did, dave.appPassword) })).status
      assert.equal(await signIn(), 200)
      assert.equal(await signIn(), 200)
      assert.deepEqual(calls, ['createSession'], 'within the recheck time the PDS is not asked')
      clock += 6_000
      assert.equal(await signIn(), 200)
      assert.equal(await signIn(), 200)
      assert.deepEqual(calls, ['createSession', 'refreshSession'])
      // A wrong password is never let in by a remembered right one.
      clock += 6_000
      const wrong = await getToken(appview.url, { authorization: basic(dave.did, 'nope-nope') })
      assert.equal(wrong.status, 401)
      assert.deepEqual(calls, ['createSession', 'refreshSession', 'createSession'])
    } finally {
      net.pds.pds.server!.off('request', count)
    }
  })

  it('answers 429 with Retry-After to the 101st refused sign-in, without asking the PDS', async () => {
    let createSessions = 0
    const count = (request: { url?: string }) => {
      if (request.url?.startsWith('/xrpc/com.atproto.server.createSession')) createSessions++
    }
    net.pds.pds.server!.on('request', count)
    try {
      const carol = await net.pds.createAccount('carol.test')
      const wrong = () =>
        getToken(appview.url, { authorization: basic(carol.did, 'wrong-password') })
      for (let i = 1; i <= 100; i++) assert.equal((await wrong()).status, 401, `attempt ${i}`)
      assert.equal(createSessions, 100)
      const limited = await wrong()
      assert.equal(limited.status, 429)
      const errors = limited.body.errors as { code: string }[]
      assert.equal(errors[0]?.code, 'TOOMANYREQUESTS')
      const retryAfter = Number(limited.headers.get('retry-after'))
      assert.ok(retryAfter > 0 && retryAfter <= 15 * 60, `Retry-After ${retryAfter}`)
      assert.equal(createSessions, 100)
      // The right password is held back too until the window passes: guessing stops here.
      const right = await getToken(appview.url, {
        authorization: basic(carol.did, carol.appPassword),
      })
      assert.equal(right.status, 429)
    } finally {
      net.pds.pds.server!.off('request', count)
    }
  })

  it('answers 429 with Retry-After to device code requests past 60 a minute from one address', async () => {
    const request = () =>
      fetch(`${appview.url}/auth/device/code`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_name: 'probe' }),
      })
    const codes = new Set<string>()
    for (let i = 1; i <= 60; i++) {
      const res = await request()
      assert.equal(res.status, 200, `request ${i}`)
      codes.add(((await res.json()) as { device_code: string }).device_code)
    }
    assert.equal(codes.size, 60)
    const limited = await request()
    assert.equal(limited.status, 429)
    const retryAfter = Number(limited.headers.get('retry-after'))
    assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    await limited.body?.cancel()
    const rows = await appview.ctx.db.db
      .selectFrom('device_authorization')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow()
    assert.equal(Number(rows.n), 60, 'the refused request stored no code')
  })
})
