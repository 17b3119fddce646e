// Attacks on the AppView and holds from outside (issue 16), on one stack: a real PLC and
// PDS, the AppView, its hold and a second hold, each hold a process of its own.
// - Oversized input: request headers past Node's limit answer 431 and bodies past each
//   route's limit 413, never a 500 or a reset, and both services serve on.
// - Service tokens: a genuine token the user's PDS issued for one hold and one method is
//   refused by another hold, by the same hold for another method, and when signed by
//   another account; nothing is written. (Expiry and the clock skew are checked in
//   packages/core/test/service-auth.test.ts: a real token cannot be made to expire here
//   without waiting out the hold's 30 s of allowed skew.)
// - Secrets: after all of it (sign-in, pushes, pulls, refused tokens), neither the
//   AppView's log (debug level) nor the holds' output holds the app password, a registry
//   token or a service token.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type HoldProcess, startHoldProcess } from '@atcr/testkit'
import { Pusher } from './registry-client.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

const KiB = 1024
const MiB = 1024 * KiB

describe('attacks: oversized input, replayed service tokens, secrets in logs', () => {
  let stack: RegistryStack
  let second: HoldProcess
  /** Every credential the test saw: none may appear in a log. */
  const secrets = new Set<string>()

  before(async () => {
    stack = await startRegistryStack({ holdConfig: { log: { level: 'debug' } } })
    second = await startHoldProcess({
      plcUrl: stack.net.plc.url,
      ownerDid: stack.bob.did,
      logLevel: 'debug',
    })
    secrets.add(stack.alice.appPassword)
    secrets.add(stack.bob.appPassword)
  })
  after(async () => {
    await second?.close()
    await stack?.close()
  })
  // No afterEach flush of the AppView's log: the last test reads all of it.

  /** A genuine service token from the account's own PDS. */
  const serviceToken = async (account: RegistryStack['alice'], aud: string, lxm: string) => {
    const { data } = await account.agent.com.atproto.server.getServiceAuth({ aud, lxm })
    secrets.add(data.token)
    return data.token
  }

  it('answers request headers that are too large with 431, and serves on', async () => {
    for (const [name, url] of [
      ['appview', `${stack.url}/v2/`],
      ['hold', `${stack.hold.url}/xrpc/_health`],
    ] as const) {
      const big = await fetch(url, { headers: { 'x-padding': 'a'.repeat(64 * KiB) } })
      assert.equal(big.status, 431, `${name}: one 64 KiB header`)
      await big.body?.cancel()
      const many = new Headers()
      for (let i = 0; i < 400; i++) many.set(`x-padding-${i}`, 'b'.repeat(60))
      const lots = await fetch(url, { headers: many })
      assert.equal(lots.status, 431, `${name}: 400 headers`)
      await lots.body?.cancel()
      const after = await fetch(url)
      assert.ok(after.status < 500, `${name} still answers (${after.status})`)
      await after.body?.cancel()
    }
  })

  it('answers bodies past each route limit with 413 and a clear error, and serves on', async () => {
    const huge = (bytes: number) => Buffer.alloc(bytes, 'x')
    const cases: { what: string; url: string; type: string; body: Buffer }[] = [
      {
        what: 'token request form',
        url: `${stack.url}/auth/token`,
        type: 'application/x-www-form-urlencoded',
        body: huge(MiB),
      },
      {
        what: 'device code request',
        url: `${stack.url}/auth/device/code`,
        type: 'application/x-www-form-urlencoded',
        body: huge(MiB),
      },
      {
        what: 'hold XRPC procedure',
        url: `${stack.hold.url}/xrpc/io.atcr.hold.notifyManifest`,
        type: 'application/json',
        body: huge(16 * MiB),
      },
    ]
    for (const { what, url, type, body } of cases) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      }).catch((error: Error) => assert.fail(`${what}: ${error.message} (${String(error.cause)})`))
      assert.equal(res.status, 413, what)
      const text = await res.text()
      assert.match(text, /too large|exceed/i, `${what}: ${text.slice(0, 200)}`)
    }
    const health = await fetch(`${stack.hold.url}/xrpc/_health`)
    assert.equal(health.status, 200)
    await health.body?.cancel()
    const token = await fetch(`${stack.url}/auth/token?service=${stack.host}`)
    assert.equal(token.status, 200)
    await token.body?.cancel()
  })

  it('refuses a service token replayed to another hold, for another method, or signed by someone else', async () => {
    const call = (hold: HoldProcess, nsid: string, token: string) =>
      fetch(`${hold.url}/xrpc/${nsid}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{}',
      })
    const initiate = 'io.atcr.hold.initiateUpload'
    // The control: the genuine token works where and for what it was issued.
    const genuine = await serviceToken(stack.alice, stack.hold.did, initiate)
    const accepted = await call(stack.hold, initiate, genuine)
    assert.equal(accepted.status, 200, await accepted.clone().text())
    const { uploadId } = (await accepted.json()) as { uploadId: string }
    assert.ok(uploadId)
    await call(
      stack.hold,
      'io.atcr.hold.abortUpload',
      await serviceToken(stack.alice, stack.hold.did, 'io.atcr.hold.abortUpload'),
    )

    const headBefore = await repoHead(second)
    const replays: [string, HoldProcess, string, string][] = [
      ['to another hold', second, initiate, genuine],
      ['for another method', stack.hold, 'io.atcr.hold.requestCrew', genuine],
    ]
    for (const [what, hold, nsid, token] of replays) {
      const res = await call(hold, nsid, token)
      assert.equal(res.status, 401, `${what}: ${await res.clone().text()}`)
      const body = (await res.json()) as { error?: string }
      assert.ok(body.error, `${what}: an XRPC error name`)
    }
    // Alice's claims under bob's signature: a token signed by someone else.
    const bobs = await serviceToken(stack.bob, stack.hold.did, initiate)
    const [header, payload, signature] = bobs.split('.')
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, iss: stack.alice.did })).toString('base64url')}.${signature}`
    const refused = await call(stack.hold, initiate, forged)
    assert.equal(refused.status, 401, await refused.clone().text())
    await refused.body?.cancel()
    assert.equal(await repoHead(second), headBefore, 'the second hold wrote nothing')
  })

  it('writes no credential to the logs of a push and pull', async () => {
    const pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'secrets'))
    secrets.add(await pusher.token())
    const image = await pusher.image('secrets')
    const put = await pusher.putManifest('v1', image.bytes)
    assert.equal(put.status, 201, await put.text())
    const pulled = await stack.request(`/v2/${pusher.name}/manifests/v1`, {
      as: stack.bob,
      scopes: [repoScope(pusher.name, 'pull')],
    })
    assert.equal(pulled.status, 200)
    await pulled.body?.cancel()
    // Wrong passwords are credentials too.
    const wrong = `${stack.alice.appPassword.slice(0, -4)}zzzz`
    secrets.add(wrong)
    const refused = await fetch(`${stack.url}/auth/token?service=${stack.host}`, {
      headers: {
        authorization: `Basic ${Buffer.from(`${stack.alice.did}:${wrong}`).toString('base64')}`,
      },
    })
    assert.equal(refused.status, 401)
    await refused.body?.cancel()

    const logs = {
      appview: stack.logs.text(),
      hold: stack.hold.output(),
      'second hold': second.output(),
    }
    // The logs are there to be searched: requests were logged at debug level.
    for (const [name, text] of Object.entries(logs)) {
      assert.ok(text.length > 1000, `${name} logged ${text.length} characters`)
    }
    assert.match(logs.appview, /\/auth\/token/)
    for (const secret of secrets) {
      // A JWT's signature alone is enough to recognise it.
      const needle = secret.split('.').at(-1)!
      for (const [name, text] of Object.entries(logs)) {
        assert.ok(!text.includes(needle), `${name} logged a credential (${needle.slice(0, 6)}…)`)
      }
    }
  })
})

/** The head commit of a hold's repository. */
async function repoHead(hold: HoldProcess): Promise<string> {
  const res = await fetch(
    `${hold.url}/xrpc/com.atproto.sync.getLatestCommit?did=${encodeURIComponent(hold.did)}`,
  )
  return ((await res.json()) as { cid: string }).cid
}
