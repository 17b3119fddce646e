// Where a hold's getBlob redirect may send clients (issue 16): real holds whose redirects
// (their CDN base URL) point at cloud metadata (link-local) or at the AppView itself. The
// client never gets such a Location; it gets a clear OCI error. A redirect to the hold's
// own signed URL on loopback passes in dev mode; a small blob comes as bytes instead. Production's public-https-only rule for
// names and addresses is checked in packages/core's identity-ssrf test: a production-mode
// AppView cannot reach this loopback network at all.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { type HoldProcess, startHoldProcess, type TestAccount } from '@atcr/testkit'
import { Pusher } from './registry-client.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

async function setDefaultHold(account: TestAccount, holdDid: string): Promise<void> {
  await account.agent.com.atproto.repo.putRecord({
    repo: account.did,
    collection: 'io.atcr.sailor.profile',
    rkey: 'self',
    record: {
      $type: 'io.atcr.sailor.profile',
      createdAt: new Date().toISOString(),
      defaultHold: holdDid,
    },
  })
}

describe('blob redirects passed on to clients', () => {
  let stack: RegistryStack
  const holds: HoldProcess[] = []

  /** A hold that sends blob readers to `cdn`, and an account pushing to it. */
  async function redirectingHold(cdn: string, handle: string): Promise<Pusher> {
    const hold = await startHoldProcess({
      plcUrl: stack.net.plc.url,
      ownerDid: stack.alice.did,
      allowAllCrew: true,
      config: { storage: { cdn_base_url: cdn } },
    })
    holds.push(hold)
    const account = await stack.net.pds.createAccount(handle)
    await setDefaultHold(account, hold.did)
    return new Pusher(stack, account, stack.nameOf(account, 'app'))
  }

  async function pull(pusher: Pusher, digest: string, headers: Record<string, string> = {}) {
    return stack.request(`/v2/${pusher.name}/blobs/${digest}`, {
      as: pusher.account,
      scopes: [repoScope(pusher.name, 'pull')],
      headers,
    })
  }

  before(async () => {
    stack = await startRegistryStack()
  })
  after(async () => {
    for (const hold of holds) await hold.close()
    await stack?.close()
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it("passes on the hold's own signed URL on loopback in dev mode", async () => {
    const alice = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'app'))
    // Past the hold's inline_max_bytes (1 MiB): a smaller blob comes back as bytes.
    const content = randomBytes(1024 * 1024 + 4096)
    const { digest } = await alice.blob(content)
    const response = await pull(alice, digest)
    assert.equal(response.status, 307)
    const location = new URL(response.headers.get('location')!)
    assert.equal(location.origin, new URL(stack.hold.url).origin)
    const followed = await fetch(location, { headers: { range: 'bytes=100-199' } })
    assert.equal(followed.status, 206)
    assert.ok(Buffer.from(await followed.arrayBuffer()).equals(content.subarray(100, 200)))
  })

  it('streams a small blob of a filesystem hold on itself: one request, ranges too', async () => {
    const alice = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'app'))
    const content = randomBytes(64 * 1024)
    const { digest } = await alice.blob(content)
    const whole = await pull(alice, digest)
    assert.equal(whole.status, 200)
    assert.equal(whole.headers.get('docker-content-digest'), digest)
    assert.equal(whole.headers.get('content-length'), String(content.length))
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(content))
    const part = await pull(alice, digest, { range: 'bytes=100-199' })
    assert.equal(part.status, 206)
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${content.length}`)
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(content.subarray(100, 200)))
  })

  it('never sends a client to a link-local (cloud metadata) address, even in dev mode', async () => {
    const pusher = await redirectingHold('http://169.254.169.254/latest/meta-data', 'carol.test')
    const { digest } = await pusher.blob(randomBytes(2048))
    const response = await pull(pusher, digest)
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('location'), null)
    const body = (await response.json()) as { errors: { code: string; message: string }[] }
    assert.equal(body.errors[0]!.code, 'UNAVAILABLE')
    assert.match(body.errors[0]!.message, /redirected to http:\/\/169\.254\.169\.254.*linkLocal/)
    assert.doesNotMatch(body.errors[0]!.message, /meta-data/)
  })

  it("never sends a client back to the AppView's own origin", async () => {
    const pusher = await redirectingHold(`${stack.url}/v2`, 'dave.test')
    const { digest } = await pusher.blob(randomBytes(2048))
    const response = await pull(pusher, digest)
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('location'), null)
    const body = (await response.json()) as { errors: { code: string; message: string }[] }
    assert.match(body.errors[0]!.message, /the AppView itself/)
  })
})
