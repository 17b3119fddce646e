import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { createIdentityResolver, type IdentityResolver } from '@atcr/core/identity'
import { captureLogger } from '@atcr/core/log'
import { loadOrCreateSessionKey } from '@atcr/core/oauth'
import { verifyServiceAuthToken } from '@atcr/core/service-auth'
import { startNetwork, staticDns, type TestAccount, type TestNetwork } from '@atcr/testkit'
import { type Agent, Client, type DidString } from '@atproto/lex-client'
import type { PasswordSession } from '@atproto/lex-password-session'
import { decodeJwt } from 'jose'
import { authKeyPaths } from '../src/auth/keys.ts'
import { SessionStore, type StoredSession } from '../src/auth/session-store.ts'
import { NoSessionError } from '../src/auth/types.ts'
import {
  type AuthAppView,
  basic,
  endPdsSession,
  getToken,
  startAuthAppView,
} from './auth-harness.ts'

const HOLD = 'did:web:hold01.registry.test'
const INITIATE = 'io.atcr.hold.initiateUpload'

/** A JWT-shaped access token that ran out an hour ago (the PDS never sees it: it is refreshed first). */
function expiredAccessJwt(did: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const exp = Math.floor(Date.now() / 1000) - 3600
  return `${part({ alg: 'HS256', typ: 'at+jwt' })}.${part({ scope: 'com.atproto.appPass', sub: did, exp })}.c2ln`
}

/** Who the PDS takes an agent for (com.atproto.server.getSession). */
async function whoAmI(agent: Agent): Promise<{ did: string; handle: string }> {
  const res = await agent.fetchHandler('/xrpc/com.atproto.server.getSession', { method: 'GET' })
  assert.equal(res.status, 200)
  return (await res.json()) as { did: string; handle: string }
}

describe('users PDS sessions', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let dataDir: string
  let appview: AuthAppView
  let resolver: IdentityResolver
  const logs = captureLogger()
  const dns = staticDns()

  const start = async () => {
    appview = await startAuthAppView({ dataDir, plcUrl: net.plc.url, dns, logs })
  }
  const restart = async () => {
    await appview.close()
    await start()
  }
  /** Opens the session table with the AppView's key, as an attacker with the key would. */
  const withStore = async <T>(fn: (store: SessionStore) => Promise<T>): Promise<T> => {
    const key = await loadOrCreateSessionKey(authKeyPaths(dataDir).sessionKey)
    return fn(new SessionStore(appview.ctx.db, key))
  }
  const stored = (did: string) => withStore((store) => store.load(did))
  const login = async (account: TestAccount) => {
    const res = await getToken(appview.url, {
      authorization: basic(account.did, account.appPassword),
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
  }

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    dataDir = await mkdtemp(join(tmpdir(), 'atcr-appview-sessions-'))
    resolver = createIdentityResolver({ mode: 'dev', plcUrl: net.plc.url })
    await start()
  })
  after(async () => {
    await appview?.close()
    await resolver?.close()
    await net?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })
  // Node 24 has TestContext.passed; the installed @types/node does not declare it yet.
  afterEach((t) => logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it('has no session for a user who never signed in', async () => {
    await assert.rejects(appview.ctx.sessions.agentFor(bob.did), (error: unknown) => {
      assert.ok(error instanceof NoSessionError)
      assert.equal(error.did, bob.did)
      return true
    })
  })

  it('keeps the session from a token exchange, sealed: no token in the database files', async () => {
    await login(alice)
    const agent = (await appview.ctx.sessions.agentFor(alice.did)) as PasswordSession
    const { accessJwt, refreshJwt } = agent.session
    // The agent writes to alice's repo as alice.
    const me = await whoAmI(agent)
    assert.equal(me.did, alice.did)
    assert.equal(me.handle, 'alice.test')

    const files = (await readdir(dataDir)).filter((f) => f.startsWith('appview.sqlite'))
    assert.ok(files.includes('appview.sqlite'))
    const bytes = Buffer.concat(await Promise.all(files.map((f) => readFile(join(dataDir, f)))))
    for (const secret of [accessJwt, refreshJwt, accessJwt.split('.')[1]!, alice.appPassword]) {
      assert.equal(bytes.includes(secret), false)
    }
    // ...yet the row is there, and opens with the AppView's key.
    const row = await stored(alice.did)
    assert.equal(row?.session.refreshJwt, refreshJwt)
    assert.equal(row?.session.pdsEndpoint, net.pds.url)
  })

  it('resumes the session after a restart on the same data directory', async () => {
    await restart()
    const agent = await appview.ctx.sessions.agentFor(alice.did)
    const { body } = await new Client(agent).createRecord(
      {
        $type: 'io.atcr.sailor.star',
        subject: { did: alice.did, repository: 'app' },
        createdAt: new Date().toISOString(),
      },
      undefined,
      { repo: alice.did as DidString },
    )
    assert.match(body.uri, new RegExp(`^at://${alice.did}/io.atcr.sailor.star/`))
  })

  it('refreshes an expired access token once, for concurrent callers, and keeps the new one', async () => {
    const before = await stored(alice.did)
    assert.ok(before)
    await withStore((store) =>
      store.update(before.sessionId, {
        ...before.session,
        accessJwt: expiredAccessJwt(alice.did),
      }),
    )
    await restart()
    const agents = await Promise.all(
      Array.from({ length: 5 }, () => appview.ctx.sessions.agentFor(alice.did)),
    )
    assert.ok(agents.every((agent) => agent === agents[0]))
    const { session } = agents[0] as PasswordSession
    assert.ok((decodeJwt(session.accessJwt).exp ?? 0) > Date.now() / 1000 + 600)
    assert.notEqual(session.refreshJwt, before.session.refreshJwt)
    assert.equal((await whoAmI(agents[0]!)).did, alice.did)

    const after = await stored(alice.did)
    assert.equal(after?.session.accessJwt, session.accessJwt)
    assert.equal(after?.session.refreshJwt, session.refreshJwt)
  })

  it('mints service tokens on the PDS that verify for the hold, and reuses them', async () => {
    const token = await appview.ctx.sessions.serviceToken(alice.did, HOLD, INITIATE)
    const verified = await verifyServiceAuthToken(token, {
      audience: HOLD,
      lxm: INITIATE,
      resolver,
    })
    assert.equal(verified.iss, alice.did)
    assert.ok(verified.exp <= Math.floor(Date.now() / 1000) + 61)
    assert.equal(await appview.ctx.sessions.serviceToken(alice.did, HOLD, INITIATE), token)

    const other = await appview.ctx.sessions.serviceToken(alice.did, HOLD, 'io.atcr.hold.getQuota')
    assert.notEqual(other, token)
    await assert.rejects(
      verifyServiceAuthToken(other, { audience: HOLD, lxm: INITIATE, resolver }),
      { name: 'BadJwtLexiconMethodError' },
    )
  })

  it('forgets a session whose refresh token the PDS revoked', async () => {
    await login(bob)
    const row = await stored(bob.did)
    assert.ok(row)
    // The user ends the session on their PDS (as signing out everywhere would).
    await endPdsSession(net.pds.url, row.session.refreshJwt)
    const expired: StoredSession = { ...row.session, accessJwt: expiredAccessJwt(bob.did) }
    await withStore((store) => store.update(row.sessionId, expired))
    await restart()

    await assert.rejects(appview.ctx.sessions.agentFor(bob.did), NoSessionError)
    assert.equal(await stored(bob.did), null)
    await assert.rejects(appview.ctx.sessions.serviceToken(bob.did, HOLD, INITIATE), NoSessionError)

    // Signing in again brings it back.
    await login(bob)
    const agent = await appview.ctx.sessions.agentFor(bob.did)
    assert.equal((await whoAmI(agent)).did, bob.did)
  })

  it('drops a stored session that does not open with the key', async () => {
    const row = await stored(alice.did)
    assert.ok(row)
    // Bob's sealed session copied onto alice's row: sealed for another DID, so it must not open.
    const bobSealed = await appview.ctx.db.db
      .selectFrom('pds_session')
      .select('sealed')
      .where('did', '=', bob.did)
      .executeTakeFirstOrThrow()
    await appview.ctx.db.db
      .updateTable('pds_session')
      .set({ sealed: bobSealed.sealed })
      .where('did', '=', alice.did)
      .execute()
    await restart()
    await assert.rejects(appview.ctx.sessions.agentFor(alice.did), NoSessionError)
    assert.equal(await stored(alice.did), null)
  })
})
