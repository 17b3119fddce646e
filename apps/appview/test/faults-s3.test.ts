// Issue 16's fault "S3 errors and timeouts", at the network level: the hold reaches s3rver
// through a TCP proxy (testkit startTcpProxy) that cuts its connections in the middle of
// an upload, or refuses every connection for a while. A push then succeeds through the S3
// client's retries, or fails with a retryable OCI error in bounded time; never half a blob,
// never a hang, and everything works again once S3 is reachable.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { assertRetryable, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const MiB = 1024 * 1024

describe('faults: S3 cut off under the hold', () => {
  let stack: RegistryStack
  let pusher: Pusher

  before(async () => {
    stack = await startRegistryStack({
      storage: 's3',
      s3Proxy: true,
      registry: { hold_health_interval: 0 },
    })
    pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 's3-faults'))
  })
  after(() => stack?.close())

  it('connections cut mid-upload: the blob is stored whole or not at all, and a retry stores it', async () => {
    const bytes = randomBytes(12 * MiB)
    const pending = pusher.upload(bytes)
    setTimeout(() => stack.s3Proxy!.cut(), 50)
    const response = await pending
    if (response.status !== 201) {
      await assertRetryable(response)
      assert.equal((await pusher.head(bytes)).status, 404, 'no half blob')
      assert.equal((await pusher.upload(bytes)).status, 201)
    }
    const stored = await pusher.head(bytes)
    assert.equal(stored.status, 200)
    assert.equal(stored.headers.get('content-length'), String(bytes.length))
    const read = await pusher.fetch(`/v2/${pusher.name}/blobs/${sha256(bytes)}`)
    assert.ok(Buffer.from(await read.arrayBuffer()).equals(bytes))
  })

  it('S3 refusing every connection: a retryable error in bounded time, then pushes work again', async () => {
    const bytes = randomBytes(64 * 1024)
    stack.s3Proxy!.cut({ refuse: true })
    try {
      const started = Date.now()
      await assertRetryable(await pusher.upload(bytes))
      assert.ok(Date.now() - started < 60_000, 'no hang')
    } finally {
      stack.s3Proxy!.accept()
    }
    assert.equal((await pusher.head(bytes)).status, 404, 'nothing stored')
    assert.equal((await pusher.upload(bytes)).status, 201)
    assert.equal((await pusher.head(bytes)).status, 200)
  })
})
