// Issue 16's fault "S3 errors and timeouts", at the HTTP level: the hold reaches s3rver
// through a proxy (testkit startS3FaultProxy) that answers chosen S3 operations with the
// errors AWS sends (500 InternalError, 503 SlowDown), never answers them, or cuts a read's
// body short. Reads and writes go through the hold (no presigned redirects), so that what
// a client sees is what the hold made of the fault.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { assertRetryable, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const MiB = 1024 * 1024
const WRITES = [
  'PutObject',
  'CreateMultipartUpload',
  'UploadPart',
  'CompleteMultipartUpload',
] as const

describe('faults: S3 answering errors, stalling, cutting reads short', () => {
  let stack: RegistryStack
  let pusher: Pusher

  before(async () => {
    stack = await startRegistryStack({
      storage: 's3',
      s3Faults: true,
      presignedRedirects: false,
      registry: { hold_health_interval: 0 },
      // A stalled S3 is given up on after 3 s (the default is 60).
      holdEnv: { ATCR_HOLD_STORAGE_S3_REQUEST_TIMEOUT: '3' },
    })
    pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 's3-errors'))
  })
  after(() => stack?.close())
  afterEach(() => stack.s3Faults!.clear())

  const read = async (bytes: Uint8Array) => {
    const response = await pusher.fetch(`/v2/${pusher.name}/blobs/${sha256(bytes)}`)
    assert.equal(response.status, 200)
    return Buffer.from(await response.arrayBuffer())
  }

  it('a few 500s and 503 SlowDowns: the S3 client retries, the blob is stored whole', async () => {
    for (const [status, code] of [
      [503, 'SlowDown'],
      [500, 'InternalError'],
    ] as const) {
      const bytes = randomBytes(6 * MiB)
      stack.s3Faults!.inject({
        operations: [...WRITES],
        fault: { kind: 'error', status, code },
        times: 2,
      })
      const response = await pusher.upload(bytes)
      assert.equal(response.status, 201, await response.text())
      assert.ok(stack.s3Faults!.seen().filter((s) => s.broken).length >= 2, 'the faults were met')
      assert.ok((await read(bytes)).equals(bytes), `${code}: byte for byte`)
      stack.s3Faults!.clear()
    }
  })

  it('S3 refusing every write: a retryable error, nothing stored, then pushes work again', async () => {
    const bytes = randomBytes(256 * 1024)
    stack.s3Faults!.inject({
      operations: [...WRITES],
      fault: { kind: 'error', status: 503, code: 'SlowDown' },
    })
    await assertRetryable(await pusher.upload(bytes))
    stack.s3Faults!.clear()
    assert.equal((await pusher.head(bytes)).status, 404, 'no blob')
    assert.equal((await pusher.upload(bytes)).status, 201)
    assert.ok((await read(bytes)).equals(bytes))
  })

  it('S3 not answering: the hold gives up in bounded time, serves other requests, and recovers', async () => {
    const bytes = randomBytes(128 * 1024)
    stack.s3Faults!.inject({ operations: [...WRITES], fault: { kind: 'stall' } })
    const started = Date.now()
    const pending = pusher.upload(bytes)
    // Meanwhile the hold answers what does not need S3.
    const health = await fetch(`${stack.hold.url}/xrpc/_health`)
    assert.equal(health.status, 200)
    await health.body?.cancel()
    await assertRetryable(await pending)
    assert.ok(Date.now() - started < 45_000, `gave up after ${Date.now() - started} ms`)
    stack.s3Faults!.clear()
    assert.equal((await pusher.head(bytes)).status, 404, 'no blob')
    assert.equal((await pusher.upload(bytes)).status, 201)
    assert.ok((await read(bytes)).equals(bytes))
  })

  it('a read cut short by S3: the puller sees a failed transfer, never a short blob, and the next read is whole', async () => {
    const bytes = randomBytes(4 * MiB)
    assert.equal((await pusher.upload(bytes)).status, 201)
    stack.s3Faults!.inject({
      operations: ['GetObject'],
      fault: { kind: 'cut-body', afterBytes: MiB },
      times: 1,
    })
    const response = await pusher.fetch(`/v2/${pusher.name}/blobs/${sha256(bytes)}`)
    if (response.status === 200) {
      // The answer had begun: it must not end as if complete.
      await assert.rejects(response.arrayBuffer(), 'the transfer fails')
    } else {
      await assertRetryable(response)
    }
    assert.ok((await read(bytes)).equals(bytes), 'whole again')
  })
})
