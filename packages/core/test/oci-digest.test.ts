import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, test } from 'node:test'
import {
  createDigester,
  createDigestStream,
  DigestMismatchError,
  digestOf,
  digestOfStream,
  InvalidDigestError,
  isDigest,
  matchesDigest,
  OciError,
  parseDigest,
  verifyDigest,
} from '@atcr/core/oci'

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
const EMPTY_SHA512 =
  'sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e'
const HELLO_SHA256 = 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'

function chunksOf(bytes: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const chunks: Uint8Array[] = []
  let offset = 0
  for (let i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length]!
    chunks.push(bytes.subarray(offset, offset + size))
    offset += size
  }
  return chunks
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() })
}

describe('digest parsing', () => {
  test('accepts sha256 and sha512 with lowercase hex of the exact length', () => {
    assert.deepEqual(parseDigest(EMPTY_SHA256), {
      algorithm: 'sha256',
      hex: EMPTY_SHA256.slice(7),
      digest: EMPTY_SHA256,
    })
    assert.equal(parseDigest(EMPTY_SHA512).algorithm, 'sha512')
    assert.equal(isDigest(EMPTY_SHA256), true)
    assert.equal(isDigest(EMPTY_SHA512), true)
  })

  const malformed: Array<[string, string, string]> = [
    ['uppercase hex', EMPTY_SHA256.toUpperCase().replace('SHA256', 'sha256'), 'encoding'],
    ['63 hex characters', EMPTY_SHA256.slice(0, -1), 'encoding'],
    ['65 hex characters', `${EMPTY_SHA256}0`, 'encoding'],
    ['sha512 with 64 characters', `sha512:${EMPTY_SHA256.slice(7)}`, 'encoding'],
    ['an unknown algorithm', `md5:${'a'.repeat(32)}`, 'algorithm'],
    ['sha384', `sha384:${'a'.repeat(96)}`, 'algorithm'],
    ['an uppercase algorithm', `SHA256:${EMPTY_SHA256.slice(7)}`, 'format'],
    ['a missing colon', EMPTY_SHA256.slice(7), 'format'],
    ['an empty string', '', 'format'],
    ['an empty hex part', 'sha256:', 'format'],
    ['an empty algorithm', `:${EMPTY_SHA256.slice(7)}`, 'format'],
    ['a non-hex character', `sha256:${'g'.repeat(64)}`, 'encoding'],
    ['a trailing newline', `${EMPTY_SHA256}\n`, 'format'],
  ]
  for (const [what, input, reason] of malformed) {
    test(`rejects ${what} as DIGEST_INVALID (${reason})`, () => {
      assert.equal(isDigest(input), false)
      assert.throws(
        () => parseDigest(input),
        (error: unknown) => {
          assert.ok(error instanceof InvalidDigestError)
          assert.ok(error instanceof OciError)
          assert.equal(error.code, 'DIGEST_INVALID')
          assert.equal(error.status, 400)
          assert.equal(error.reason, reason)
          return true
        },
      )
    })
  }

  test('says what is wrong', () => {
    assert.throws(() => parseDigest(`md5:${'a'.repeat(32)}`), /unsupported algorithm "md5"/)
    assert.throws(() => parseDigest(EMPTY_SHA256.slice(0, -1)), /64 hex characters, got 63/)
    assert.throws(() => parseDigest(EMPTY_SHA256.toUpperCase().replace('SHA', 'sha')), /lowercase/)
  })

  test('does not echo a huge input in full', () => {
    const input = `sha256:${'a'.repeat(100_000)}`
    assert.throws(
      () => parseDigest(input),
      (error: Error) => error.message.length < 400,
    )
  })

  test('non-strings are not digests', () => {
    assert.equal(isDigest(undefined), false)
    assert.equal(isDigest(42), false)
  })
})

describe('digest verification', () => {
  test('known digests of known content', () => {
    assert.equal(digestOf(new Uint8Array()), EMPTY_SHA256)
    assert.equal(digestOf(new Uint8Array(), 'sha512'), EMPTY_SHA512)
    assert.equal(digestOf('hello'), HELLO_SHA256)
  })

  test('good content verifies, by bytes or by digest string', () => {
    const bytes = new TextEncoder().encode('hello')
    assert.equal(verifyDigest(HELLO_SHA256, bytes).digest, HELLO_SHA256)
    assert.equal(verifyDigest(HELLO_SHA256, HELLO_SHA256).algorithm, 'sha256')
    assert.equal(matchesDigest(HELLO_SHA256, bytes), true)
  })

  test('sha512 content verifies with the sha512 algorithm', () => {
    const bytes = new TextEncoder().encode('hello')
    const sha512 = digestOf(bytes, 'sha512')
    assert.match(sha512, /^sha512:[a-f0-9]{128}$/)
    assert.equal(verifyDigest(sha512, bytes).algorithm, 'sha512')
    assert.equal(matchesDigest(sha512, bytes), true)
  })

  test('bad content fails with both digests in the detail', () => {
    const bytes = new TextEncoder().encode('hellO')
    assert.equal(matchesDigest(HELLO_SHA256, bytes), false)
    assert.throws(
      () => verifyDigest(HELLO_SHA256, bytes),
      (error: unknown) => {
        assert.ok(error instanceof DigestMismatchError)
        assert.equal(error.code, 'DIGEST_INVALID')
        assert.equal(error.status, 400)
        assert.deepEqual(error.detail, { expected: HELLO_SHA256, actual: digestOf(bytes) })
        return true
      },
    )
  })

  test('the same content under another algorithm does not match', () => {
    assert.equal(matchesDigest(EMPTY_SHA256, EMPTY_SHA512), false)
    assert.throws(() => verifyDigest(EMPTY_SHA256, EMPTY_SHA512), DigestMismatchError)
  })

  test('a malformed expected digest is an invalid digest, not a mismatch', () => {
    assert.equal(matchesDigest('sha256:abc', new Uint8Array()), false)
    assert.throws(() => verifyDigest('sha256:abc', new Uint8Array()), InvalidDigestError)
  })
})

describe('streaming digests', () => {
  test('an incremental digester over chunks equals one-shot hashing', () => {
    const bytes = randomBytes(100_003)
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const digester = createDigester(algorithm)
      for (const chunk of chunksOf(bytes, [1, 7, 4096, 65_536, 13])) digester.update(chunk)
      assert.equal(digester.size, bytes.length)
      assert.equal(digester.digest(), digestOf(bytes, algorithm))
    }
  })

  test('a multi-MiB stream is hashed and passed through intact', async () => {
    const bytes = randomBytes(5 * 1024 * 1024 + 17)
    const hasher = createDigestStream()
    const downstream = createDigester()
    await pipeline(
      Readable.from(chunksOf(bytes, [65_536, 1000, 333_333, 1])),
      hasher,
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          downstream.update(chunk)
          done()
        },
      }),
    )
    const result = await hasher.result
    assert.equal(result.digest, digestOf(bytes))
    assert.equal(result.size, bytes.length)
    assert.equal(hasher.size, bytes.length)
    assert.equal(downstream.digest(), digestOf(bytes), 'the bytes come out as they went in')
  })

  test('sha512 streams, with the algorithm taken from the expected digest', async () => {
    const bytes = randomBytes(3 * 1024 * 1024)
    const expected = digestOf(bytes, 'sha512')
    const hasher = createDigestStream({ expected, expectedSize: bytes.length })
    assert.equal(hasher.algorithm, 'sha512')
    await pipeline(Readable.from(chunksOf(bytes, [50_000])), hasher, discard())
    assert.equal((await hasher.result).digest, expected)
  })

  test('a 32 MiB stream from a generator hashes like the same chunks in one digester', async () => {
    const chunk = randomBytes(64 * 1024)
    const count = 512
    async function* source() {
      for (let i = 0; i < count; i++) yield chunk
    }
    const reference = createDigester()
    for (let i = 0; i < count; i++) reference.update(chunk)
    const hasher = createDigestStream()
    await pipeline(source, hasher, discard())
    const result = await hasher.result
    assert.equal(result.size, count * chunk.length)
    assert.equal(result.digest, reference.digest())
  })

  test('an expected digest that does not match fails the pipeline with DIGEST_INVALID', async () => {
    const hasher = createDigestStream({ expected: HELLO_SHA256 })
    await assert.rejects(pipeline(Readable.from([Buffer.from('hellO')]), hasher, discard()), {
      code: 'DIGEST_INVALID',
      status: 400,
    })
    await assert.rejects(hasher.result, DigestMismatchError)
  })

  test('an expected size that does not match fails the pipeline with SIZE_INVALID', async () => {
    const hasher = createDigestStream({ expected: HELLO_SHA256, expectedSize: 6 })
    await assert.rejects(pipeline(Readable.from([Buffer.from('hello')]), hasher, discard()), {
      code: 'SIZE_INVALID',
      status: 400,
    })
  })

  test('the sink never sees a clean end when the digest is wrong', async () => {
    let finished = false
    const sink = new Writable({
      write: (_chunk, _encoding, done) => done(),
      final(done) {
        finished = true
        done()
      },
    })
    await assert.rejects(
      pipeline(
        Readable.from([Buffer.from('hellO')]),
        createDigestStream({ expected: HELLO_SHA256 }),
        sink,
      ),
    )
    assert.equal(finished, false)
  })

  test('a source that fails midway rejects the result instead of leaving it pending', async () => {
    async function* failing() {
      yield Buffer.from('partial')
      throw new Error('connection reset')
    }
    const hasher = createDigestStream()
    await assert.rejects(pipeline(failing, hasher, discard()), /connection reset/)
    await assert.rejects(hasher.result, /connection reset/)
  })

  test('a malformed expected digest is refused up front', () => {
    assert.throws(() => createDigestStream({ expected: 'sha256:nope' }), InvalidDigestError)
  })

  test('digestOfStream hashes a Readable to its end', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 5)
    const result = await digestOfStream(Readable.from(chunksOf(bytes, [12_345])), 'sha512')
    assert.equal(result.digest, digestOf(bytes, 'sha512'))
    assert.equal(result.size, bytes.length)
  })
})
