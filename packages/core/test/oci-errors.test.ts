import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  buildBearerChallenge,
  isOciErrorCode,
  OCI_ERROR_CODES,
  OciError,
  ociErrorResponse,
  ociErrorsResponse,
  toOciError,
} from '@atcr/core/oci'

describe('error registry', () => {
  test('holds every code of the distribution spec and the CNCF distribution extras', () => {
    const spec = [
      'BLOB_UNKNOWN',
      'BLOB_UPLOAD_INVALID',
      'BLOB_UPLOAD_UNKNOWN',
      'DIGEST_INVALID',
      'MANIFEST_BLOB_UNKNOWN',
      'MANIFEST_INVALID',
      'MANIFEST_UNKNOWN',
      'NAME_INVALID',
      'NAME_UNKNOWN',
      'SIZE_INVALID',
      'UNAUTHORIZED',
      'DENIED',
      'UNSUPPORTED',
      'TOOMANYREQUESTS',
    ]
    const extras = [
      'RANGE_INVALID',
      'PAGINATION_NUMBER_INVALID',
      'MANIFEST_UNVERIFIED',
      'UNAVAILABLE',
      'UNKNOWN',
    ]
    for (const code of [...spec, ...extras]) assert.equal(isOciErrorCode(code), true, code)
    assert.equal(isOciErrorCode('NOT_A_CODE'), false)
    assert.equal(isOciErrorCode('toString'), false)
    for (const [code, { message, status }] of Object.entries(OCI_ERROR_CODES)) {
      assert.ok(message.length > 0, code)
      assert.ok(status >= 400 && status <= 599, code)
    }
  })

  const statuses: Array<[keyof typeof OCI_ERROR_CODES, number]> = [
    ['BLOB_UNKNOWN', 404],
    ['MANIFEST_UNKNOWN', 404],
    ['NAME_UNKNOWN', 404],
    ['BLOB_UPLOAD_UNKNOWN', 404],
    ['DIGEST_INVALID', 400],
    ['MANIFEST_INVALID', 400],
    ['MANIFEST_BLOB_UNKNOWN', 400],
    ['NAME_INVALID', 400],
    ['SIZE_INVALID', 400],
    ['PAGINATION_NUMBER_INVALID', 400],
    ['UNAUTHORIZED', 401],
    ['DENIED', 403],
    ['UNSUPPORTED', 405],
    ['RANGE_INVALID', 416],
    ['TOOMANYREQUESTS', 429],
    ['UNKNOWN', 500],
    ['UNAVAILABLE', 503],
  ]
  for (const [code, status] of statuses) {
    test(`${code} answers ${status} with the envelope`, () => {
      const response = ociErrorResponse(new OciError(code))
      assert.equal(response.status, status)
      assert.deepEqual(response.body, {
        errors: [{ code, message: OCI_ERROR_CODES[code].message }],
      })
      assert.match(response.headers['content-type']!, /^application\/json/)
    })
  }
})

describe('error envelope', () => {
  test('carries a custom message and the detail', () => {
    const error = new OciError('BLOB_UNKNOWN', {
      message: 'blob sha256:abc is not in alice/app',
      detail: { digest: 'sha256:abc' },
    })
    assert.deepEqual(JSON.parse(JSON.stringify(ociErrorResponse(error).body)), {
      errors: [
        {
          code: 'BLOB_UNKNOWN',
          message: 'blob sha256:abc is not in alice/app',
          detail: { digest: 'sha256:abc' },
        },
      ],
    })
  })

  test('a route may choose another status for a code', () => {
    const response = ociErrorResponse(new OciError('BLOB_UPLOAD_INVALID', { status: 400 }))
    assert.equal(response.status, 400)
    assert.equal(response.body.errors[0]!.code, 'BLOB_UPLOAD_INVALID')
  })

  test('carries the headers an error brings, such as the auth challenge', () => {
    const challenge = buildBearerChallenge({
      realm: 'https://atcr.example/auth/token',
      service: 'atcr.example',
      scope: 'repository:alice/app:pull',
    })
    const response = ociErrorResponse(
      new OciError('UNAUTHORIZED', { headers: { 'WWW-Authenticate': challenge } }),
    )
    assert.equal(response.status, 401)
    assert.equal(response.headers['www-authenticate'], challenge)
  })

  test('several errors share one envelope, with the status of the first', () => {
    const response = ociErrorsResponse([
      new OciError('MANIFEST_BLOB_UNKNOWN', { detail: { digest: 'sha256:a' } }),
      new OciError('MANIFEST_BLOB_UNKNOWN', { detail: { digest: 'sha256:b' } }),
      new OciError('NAME_UNKNOWN'),
    ])
    assert.equal(response.status, 400)
    assert.deepEqual(
      response.body.errors.map((e) => [e.code, e.detail]),
      [
        ['MANIFEST_BLOB_UNKNOWN', { digest: 'sha256:a' }],
        ['MANIFEST_BLOB_UNKNOWN', { digest: 'sha256:b' }],
        ['NAME_UNKNOWN', undefined],
      ],
    )
    assert.equal('detail' in response.body.errors[2]!, false)
  })

  test('an unexpected error becomes UNKNOWN/500 without leaking its message', () => {
    const internal = new Error('connect ECONNREFUSED 10.0.0.7:5432 password=hunter2')
    const response = ociErrorResponse(internal)
    assert.equal(response.status, 500)
    assert.deepEqual(response.body, { errors: [{ code: 'UNKNOWN', message: 'unknown error' }] })
    assert.doesNotMatch(JSON.stringify(response), /hunter2|ECONNREFUSED/)
  })

  test('toOciError keeps OciErrors and wraps anything else, keeping it as the cause', () => {
    const known = new OciError('DENIED')
    assert.equal(toOciError(known), known)
    for (const thrown of [new TypeError('x'), 'a string', undefined, { code: 'BLOB_UNKNOWN' }]) {
      const error = toOciError(thrown)
      assert.equal(error.code, 'UNKNOWN')
      assert.equal(error.status, 500)
      assert.equal(error.cause, thrown)
    }
  })

  test('an empty list still answers a well-formed envelope', () => {
    const response = ociErrorsResponse([])
    assert.equal(response.status, 500)
    assert.equal(response.body.errors.length, 1)
  })

  test('OciError is an Error with a stack and its code in reach', () => {
    const error = new OciError('NAME_UNKNOWN', { message: 'no repository alice/nope' })
    assert.ok(error instanceof Error)
    assert.equal(error.name, 'OciError')
    assert.equal(error.message, 'no repository alice/nope')
    assert.ok(error.stack?.includes('OciError'))
  })
})
