/**
 * com.atproto.sync.getBlob with an OCI digest as `cid`: streamed by the hold (filesystem,
 * and small blobs there) with Range support, or a 307 to a presigned URL (S3's, the
 * hold's own, or the CDN) that a client follows.
 * S3 is s3rver behind the storage tests' gap proxy (storage-s3-gaps.ts); s3rver does not
 * check signatures, so a presigned URL is shown to work, not shown to be unforgeable.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdirSync, readlinkSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { StorageUrlSigner } from '../src/storage/index.ts'
import { MiB, storeBlob } from './hold-data.ts'
import { HoldFixture, type Overrides, type TestHold, type TestStorage } from './hold-harness.ts'
import { getBlob, getBlobUrl } from './hold-xrpc.ts'
import type { S3GapProxy } from './storage-s3-gaps.ts'

let fixture: HoldFixture
let proxy: S3GapProxy
let s3Storage: TestStorage

before(async () => {
  fixture = await HoldFixture.start({ accounts: ['blob-captain.test'], s3: true })
  proxy = fixture.s3.proxy
  s3Storage = fixture.s3.storage
})
after(() => fixture?.close())

const unknownDigest = `sha256:${'0'.repeat(64)}`

describe('getBlob streamed by the hold (filesystem, presigned redirects off)', () => {
  let hold: TestHold
  let bytes: Buffer
  let digest: string

  before(async () => {
    hold = await fixture.startHold({
      public: true,
      overrides: { storage: { presigned_redirects: false } },
    })
    bytes = randomBytes(3 * MiB + 17)
    digest = await storeBlob(hold.ctx, bytes)
  })
  after(async () => {
    await hold?.close()
  })

  it('streams the whole blob with its size, type, etag and range support', async () => {
    const response = await getBlob(hold, digest)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'application/octet-stream')
    assert.equal(response.headers.get('content-length'), String(bytes.length))
    assert.equal(response.headers.get('accept-ranges'), 'bytes')
    assert.equal(response.headers.get('etag'), `"${digest}"`)
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(bytes))
  })

  it('closes the blob file when the client goes away mid-download', async () => {
    const hex = digest.slice('sha256:'.length)
    const openOnBlob = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).includes(hex)
        } catch {
          return false // closed while listed
        }
      }).length
    const abort = new AbortController()
    const response = await fetch(getBlobUrl(hold, digest), { signal: abort.signal })
    assert.equal(response.status, 200)
    const reader = response.body!.getReader()
    assert.ok(((await reader.read()).value?.byteLength ?? 0) > 0)
    assert.ok(openOnBlob() > 0, 'the blob file is open while it is sent')
    abort.abort()
    const until = Date.now() + 15_000
    while (openOnBlob() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    assert.equal(openOnBlob(), 0, 'no file left open once the client left')
    // The hold still serves the blob whole afterwards.
    const again = await getBlob(hold, digest)
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(bytes))
  })

  it('answers HEAD with the size and no body', async () => {
    const response = await getBlob(hold, digest, { method: 'HEAD' })
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-length'), String(bytes.length))
    assert.equal(response.headers.get('etag'), `"${digest}"`)
    assert.equal((await response.arrayBuffer()).byteLength, 0)
  })

  it('serves single byte ranges as 206 with Content-Range', async () => {
    const size = bytes.length
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=10-19', 10, 19],
      ['bytes=1048576-', 1048576, size - 1],
      ['bytes=-100', size - 100, size - 1],
      [`bytes=${size - 5}-${size + 1000}`, size - 5, size - 1],
      [`bytes=-${size * 2}`, 0, size - 1],
    ]
    for (const [range, first, last] of cases) {
      const response = await getBlob(hold, digest, { headers: { range } })
      assert.equal(response.status, 206, range)
      assert.equal(response.headers.get('content-range'), `bytes ${first}-${last}/${size}`, range)
      assert.equal(response.headers.get('content-length'), String(last - first + 1), range)
      const body = Buffer.from(await response.arrayBuffer())
      assert.ok(body.equals(bytes.subarray(first, last + 1)), range)
    }
  })

  it('answers 416 with the size for a range past the end or ending before it starts', async () => {
    for (const range of [
      `bytes=${bytes.length}-`,
      `bytes=${bytes.length + 10}-${bytes.length + 20}`,
      'bytes=-0',
      'bytes=500-0',
    ]) {
      const response = await getBlob(hold, digest, { headers: { range } })
      assert.equal(response.status, 416, range)
      assert.equal(response.headers.get('content-range'), `bytes */${bytes.length}`, range)
      await response.arrayBuffer()
    }
  })

  it('sends the whole blob for ranges it does not honour (several, other units, malformed)', async () => {
    for (const range of ['bytes=0-1,5-6', 'items=0-5', 'bytes=abc', 'bytes=-']) {
      const response = await getBlob(hold, digest, { headers: { range } })
      assert.equal(response.status, 200, range)
      assert.equal((await response.arrayBuffer()).byteLength, bytes.length, range)
    }
  })

  it('answers 304 to a matching If-None-Match', async () => {
    const response = await getBlob(hold, digest, { headers: { 'if-none-match': `"${digest}"` } })
    assert.equal(response.status, 304)
  })

  it('answers 404 BlobNotFound for unknown digests, 400 for malformed ones', async () => {
    const missing = await getBlob(hold, unknownDigest)
    assert.equal(missing.status, 404)
    assert.deepEqual(await missing.json(), {
      error: 'BlobNotFound',
      message: `Blob not found: ${unknownDigest}`,
    })
    assert.equal((await getBlob(hold, unknownDigest, { method: 'HEAD' })).status, 404)
    const malformed = await getBlob(hold, 'sha256:XYZ')
    assert.equal(malformed.status, 400)
    assert.equal(((await malformed.json()) as { error: string }).error, 'InvalidRequest')
  })

  it('keeps serving ordinary atproto blobs by CID', async () => {
    const ref = await hold.ctx.repo.blobs.put(Buffer.from('avatar bytes'), 'image/png')
    const url = `${hold.url}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(hold.did)}&cid=${ref.ref.$link}`
    const response = await fetch(url)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'image/png')
    assert.equal(await response.text(), 'avatar bytes')
  })
})

describe('getBlob on the filesystem with presigned redirects: the hold signs its own URLs', () => {
  let hold: TestHold
  let bytes: Buffer
  let digest: string
  let signed: URL

  before(async () => {
    hold = await fixture.startHold({ public: true })
    bytes = randomBytes(2 * MiB + 5)
    digest = await storeBlob(hold.ctx, bytes)
    const response = await getBlob(hold, digest)
    assert.equal(response.status, 307)
    signed = new URL(response.headers.get('location') ?? '')
  })
  after(async () => {
    await hold?.close()
  })

  it('redirects to a signed /storage/ URL of the hold that serves the bytes without a token', async () => {
    assert.equal(signed.origin, new URL(hold.url).origin)
    const hex = digest.slice('sha256:'.length)
    assert.equal(signed.pathname, `/storage/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`)
    const whole = await fetch(signed)
    assert.equal(whole.status, 200)
    assert.equal(whole.headers.get('content-length'), String(bytes.length))
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes))
    const part = await fetch(signed, { headers: { range: 'bytes=100-199' } })
    assert.equal(part.status, 206)
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(100, 200)))
    const head = await fetch(signed, { method: 'HEAD' })
    assert.equal(head.headers.get('content-length'), String(bytes.length))
  })

  it('answers a blob of at most inline_max_bytes with its bytes, not a redirect', async () => {
    const small = randomBytes(MiB)
    const smallDigest = await storeBlob(hold.ctx, small)
    const response = await getBlob(hold, smallDigest)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-length'), String(small.length))
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(small))
    const part = await getBlob(hold, smallDigest, { headers: { range: 'bytes=10-19' } })
    assert.equal(part.status, 206)
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(small.subarray(10, 20)))

    const redirecting = await fixture.startHold({
      public: true,
      overrides: { storage: { inline_max_bytes: 0 } },
    })
    try {
      const tiny = await storeBlob(redirecting.ctx, Buffer.from('tiny'))
      const redirected = await getBlob(redirecting, tiny)
      assert.equal(redirected.status, 307)
      assert.equal(await (await fetch(redirected.headers.get('location')!)).text(), 'tiny')
    } finally {
      await redirecting.close()
    }
  })

  it('refuses tampered, unsigned and re-pointed URLs with 403', async () => {
    const tampered = new URL(signed)
    tampered.searchParams.set('expires', String(Number(signed.searchParams.get('expires')) + 60))
    const unsigned = new URL(signed)
    unsigned.search = ''
    const other = new URL(signed)
    other.pathname = `/storage/blobs/sha256/00/${'0'.repeat(64)}/data`
    const upload = new URL(signed)
    upload.pathname = '/storage/uploads/x/data'
    for (const url of [tampered, unsigned, other, upload]) {
      const response = await fetch(url)
      assert.equal(response.status, 403, url.href)
      assert.equal(((await response.json()) as { error: string }).error, 'InvalidSignature')
    }
  })

  it('signs URLs that expire', () => {
    let now = Date.parse('2026-01-01T00:00:00Z')
    const signer = new StorageUrlSigner({
      baseUrl: 'https://hold.example',
      key: new Uint8Array(32).fill(7),
      ttlSeconds: 60,
      now: () => now,
    })
    const url = new URL(signer.sign('blobs/sha256/ab/abcd/data'))
    const check = () =>
      signer.verify(
        'blobs/sha256/ab/abcd/data',
        url.searchParams.get('expires') ?? undefined,
        url.searchParams.get('signature') ?? undefined,
      )
    assert.equal(check(), true)
    now += 61_000
    assert.equal(check(), false)
  })
})

describe('getBlob with S3 storage', () => {
  let bytes: Buffer

  before(() => {
    bytes = randomBytes(2 * MiB + 3)
  })

  /** A public hold on S3 with these storage settings, with `bytes` stored on it. */
  async function s3HoldWith(storage: Overrides['storage']) {
    const hold = await fixture.startHold({
      public: true,
      storage: s3Storage,
      overrides: { storage },
    })
    return { hold, digest: await storeBlob(hold.ctx, bytes) }
  }

  it('redirects GET to a presigned URL that serves the bytes; HEAD answers the size', async () => {
    const { hold, digest } = await s3HoldWith({ presign_ttl: 120 })
    try {
      const response = await getBlob(hold, digest)
      assert.equal(response.status, 307)
      const location = new URL(response.headers.get('location') ?? '')
      assert.equal(location.origin, proxy.publicEndpoint)
      assert.equal(location.searchParams.get('X-Amz-Expires'), '120')
      // What a client does: follow the redirect.
      const followed = await fetch(getBlobUrl(hold, digest))
      assert.equal(followed.status, 200)
      assert.ok(Buffer.from(await followed.arrayBuffer()).equals(bytes))

      const head = await getBlob(hold, digest, { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), String(bytes.length))
      assert.equal((await getBlob(hold, unknownDigest)).status, 404)
    } finally {
      await hold.close()
    }
  })

  it('redirects to the CDN when cdn_base_url is set', async () => {
    const { hold, digest } = await s3HoldWith({ cdn_base_url: 'https://cdn.example.com/atcr/' })
    try {
      const response = await getBlob(hold, digest)
      assert.equal(response.status, 307)
      const hex = digest.slice('sha256:'.length)
      assert.equal(
        response.headers.get('location'),
        `https://cdn.example.com/atcr/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`,
      )
    } finally {
      await hold.close()
    }
  })

  it('streams from S3 through the hold when presigned redirects are off', async () => {
    const { hold, digest } = await s3HoldWith({ presigned_redirects: false })
    try {
      const whole = await getBlob(hold, digest)
      assert.equal(whole.status, 200)
      assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes))
      const part = await getBlob(hold, digest, { headers: { range: 'bytes=100-199' } })
      assert.equal(part.status, 206)
      assert.equal(part.headers.get('content-range'), `bytes 100-199/${bytes.length}`)
      assert.ok(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(100, 200)))
      const past = await getBlob(hold, digest, { headers: { range: `bytes=${bytes.length}-` } })
      assert.equal(past.status, 416)
      assert.equal(past.headers.get('content-range'), `bytes */${bytes.length}`)
    } finally {
      await hold.close()
    }
  })
})
