import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  assertRepositoryName,
  assertTag,
  isRepositoryName,
  isTag,
  OciError,
  parseManifestReference,
  REPOSITORY_NAME_MAX_LENGTH,
} from '@atcr/core/oci'

const DIGEST = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

describe('repository names', () => {
  const valid = [
    'a',
    'alpine',
    'library/alpine',
    'alice.bsky.social/app',
    'a/b/c/d/e',
    'my_app',
    'my__app',
    'my-app',
    'my---app',
    'my.app',
    '0/1',
    'a1.b2_c3__d4-e5',
  ]
  for (const name of valid) {
    test(`accepts ${name}`, () => {
      assert.equal(isRepositoryName(name), true)
      assert.equal(assertRepositoryName(name), name)
    })
  }

  const invalid: Array<[string, string, RegExp]> = [
    ['a triple underscore', 'my___app', /separate them/],
    ['a leading separator', '-app', /start and end/],
    ['a leading underscore', '_app', /start and end/],
    ['a leading dot in a later component', 'alice/.app', /start and end/],
    ['a trailing separator', 'app-', /start and end/],
    ['mixed separators', 'my._app', /separate them/],
    ['uppercase', 'Alice/app', /uppercase/],
    ['a leading slash', '/app', /empty path component/],
    ['a trailing slash', 'app/', /empty path component/],
    ['a double slash', 'alice//app', /empty path component/],
    ['a colon', 'did:plc:abc/app', /characters other than/],
    ['a space', 'my app', /characters other than/],
    ['the empty string', '', /empty/],
  ]
  for (const [what, name, message] of invalid) {
    test(`rejects ${what}`, () => {
      assert.equal(isRepositoryName(name), false)
      assert.throws(
        () => assertRepositoryName(name),
        (error: unknown) => {
          assert.ok(error instanceof OciError)
          assert.equal(error.code, 'NAME_INVALID')
          assert.equal(error.status, 400)
          assert.match(error.message, message)
          return true
        },
      )
    })
  }

  test('allows 255 characters and no more', () => {
    const component = 'a'.repeat(50)
    const at255 = [component, component, component, component, `${component}a`].join('/')
    assert.equal(at255.length, 255)
    assert.equal(isRepositoryName(at255), true)
    assert.equal(REPOSITORY_NAME_MAX_LENGTH, 255)
    const at256 = `${at255}b`
    assert.equal(isRepositoryName(at256), false)
    assert.throws(() => assertRepositoryName(at256), /256 characters long, the limit is 255/)
  })

  test('a long name is rejected quickly and echoed only in part', () => {
    const name = `${'a-'.repeat(50_000)}!`
    const start = performance.now()
    assert.throws(
      () => assertRepositoryName(name),
      (error: Error) => error.message.length < 400,
    )
    assert.ok(performance.now() - start < 100)
  })

  test('non-strings are not names', () => {
    assert.equal(isRepositoryName(undefined), false)
    assert.equal(isRepositoryName(['a']), false)
  })
})

describe('tags', () => {
  test('accepts the usual tags', () => {
    for (const tag of ['latest', 'v1.2.3', '1.0', '_private', 'A-Z_0.9', 'sha256-abc.sig', '0']) {
      assert.equal(isTag(tag), true, tag)
      assert.equal(assertTag(tag), tag)
    }
  })

  test('allows 128 characters and no more', () => {
    assert.equal(isTag('a'.repeat(128)), true)
    assert.equal(isTag('a'.repeat(129)), false)
    assert.throws(() => assertTag('a'.repeat(129)), /129 characters long, the limit is 128/)
  })

  const invalid: Array<[string, string, RegExp]> = [
    ['a leading dot', '.hidden', /must not start with/],
    ['a leading dash', '-rc1', /must not start with/],
    ['a colon', 'v1:2', /only letters/],
    ['a slash', 'v1/2', /only letters/],
    ['a plus', 'v1+build', /only letters/],
    ['the empty string', '', /empty/],
  ]
  for (const [what, tag, message] of invalid) {
    test(`rejects ${what} with TAG_INVALID`, () => {
      assert.equal(isTag(tag), false)
      assert.throws(
        () => assertTag(tag),
        (error: unknown) => {
          assert.ok(error instanceof OciError)
          assert.equal(error.code, 'TAG_INVALID')
          assert.equal(error.status, 400)
          assert.match(error.message, message)
          return true
        },
      )
    })
  }
})

describe('manifest references', () => {
  test('a tag', () => {
    assert.deepEqual(parseManifestReference('latest'), { kind: 'tag', tag: 'latest' })
  })

  test('a digest', () => {
    assert.deepEqual(parseManifestReference(DIGEST), {
      kind: 'digest',
      algorithm: 'sha256',
      hex: DIGEST.slice(7),
      digest: DIGEST,
    })
  })

  test('anything with a colon is judged as a digest', () => {
    assert.throws(() => parseManifestReference('sha256:abc'), { code: 'DIGEST_INVALID' })
    assert.throws(() => parseManifestReference('v1:2'), { code: 'DIGEST_INVALID' })
  })

  test('an invalid tag is TAG_INVALID', () => {
    assert.throws(() => parseManifestReference('-x'), { code: 'TAG_INVALID' })
    assert.throws(() => parseManifestReference('a'.repeat(129)), { code: 'TAG_INVALID' })
  })
})
