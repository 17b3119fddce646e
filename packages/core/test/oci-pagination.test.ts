import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { buildNextLink, OciError, parsePageRequest } from '@atcr/core/oci'

describe('pagination parameters', () => {
  test('absent or empty parameters ask for nothing in particular', () => {
    assert.deepEqual(parsePageRequest({}), {})
    assert.deepEqual(parsePageRequest(new URLSearchParams('n=&last=')), {})
  })

  test('reads n and last from a query object or URLSearchParams', () => {
    assert.deepEqual(parsePageRequest({ n: '50', last: 'v1.0' }), { n: 50, last: 'v1.0' })
    assert.deepEqual(parsePageRequest(new URLSearchParams('n=1&last=alice%2Fapp')), {
      n: 1,
      last: 'alice/app',
    })
  })

  test('a repeated parameter counts by its first value', () => {
    assert.deepEqual(parsePageRequest({ n: ['5', 'x'], last: ['a', 'b'] }), { n: 5, last: 'a' })
  })

  test('n may reach the maximum and not go past it', () => {
    assert.deepEqual(parsePageRequest({ n: '1000' }), { n: 1000 })
    assert.throws(() => parsePageRequest({ n: '1001' }), { code: 'PAGINATION_NUMBER_INVALID' })
    assert.deepEqual(parsePageRequest({ n: '20' }, { max: 20 }), { n: 20 })
    assert.throws(() => parsePageRequest({ n: '21' }, { max: 20 }), /from 1 to 20/)
  })

  for (const n of ['0', '-1', '1.5', 'abc', '1e3', '+5', ' 5', '0x10', '99999999999999999999']) {
    test(`n=${JSON.stringify(n)} is PAGINATION_NUMBER_INVALID with status 400`, () => {
      assert.throws(
        () => parsePageRequest({ n }),
        (error: unknown) => {
          assert.ok(error instanceof OciError)
          assert.equal(error.code, 'PAGINATION_NUMBER_INVALID')
          assert.equal(error.status, 400)
          return true
        },
      )
    })
  }
})

describe('Link header', () => {
  test('points at the next page of a tag list', () => {
    assert.equal(
      buildNextLink('/v2/alice.bsky.social/app/tags/list', { n: 2, last: 'v1.0' }),
      '</v2/alice.bsky.social/app/tags/list?n=2&last=v1.0>; rel="next"',
    )
  })

  test('URL-encodes the values, and a client reading the link gets them back', () => {
    const last = 'did:plc:abc/app & more'
    const header = buildNextLink('/v2/_catalog', { n: 100, last })
    assert.equal(header, '</v2/_catalog?n=100&last=did%3Aplc%3Aabc%2Fapp%20%26%20more>; rel="next"')
    const target = /^<([^>]+)>; rel="next"$/.exec(header)![1]!
    const url = new URL(target, 'https://atcr.example')
    assert.equal(url.pathname, '/v2/_catalog')
    assert.deepEqual(parsePageRequest(url.searchParams), { n: 100, last })
  })

  test('appends to a path that already has a query', () => {
    assert.equal(
      buildNextLink('/v2/a/tags/list?x=1', { n: 1, last: 'b' }),
      '</v2/a/tags/list?x=1&n=1&last=b>; rel="next"',
    )
  })

  test('refuses a path that would break the header', () => {
    assert.throws(() => buildNextLink('/v2/a>;rel=x', { n: 1, last: 'b' }), TypeError)
    assert.throws(() => buildNextLink('/v2/a\r\nX: y', { n: 1, last: 'b' }), TypeError)
  })
})
