// Property-based fuzzing (fast-check) over HTTP against a real AppView (real PDS, PLC and
// hold): manifest PUTs with mutated and arbitrary bodies, references and Content-Types;
// chunk PATCHes with arbitrary Content-Range; blob GETs with arbitrary Range; token requests
// with arbitrary scope, service and account parameters; arbitrary repository names. Never a
// 5xx; refusals carry the OCI error envelope with the right code; a refused manifest PUT
// leaves the tag where it was; a token never grants an action that was not asked for.
// Fewer runs than the unit-level fuzz tests (each is a real request); the seed is random per
// run and fast-check prints it (and the shrunk input) when a property fails.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { fromAccessEntries, parseScopes } from '@atcr/core/oci'
import fc from 'fast-check'
import { manifestBytesArb, mediaTypeArb } from './manifest-arbitraries.ts'
import { type OciErrorBody, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const MANIFEST_CODES = new Set([
  // 415 for a Content-Type the server will not read a body of.
  'UNSUPPORTED',
  'MANIFEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'DIGEST_INVALID',
  'TAG_INVALID',
  'NAME_INVALID',
])

/** A refusal: a 4xx with the OCI envelope and one of `codes`. Returns the code. */
async function expectOciRefusal(response: Response, codes: ReadonlySet<string>): Promise<string> {
  const text = await response.text()
  assert.ok(response.status < 500, `${response.status}: ${text}`)
  const body = JSON.parse(text) as OciErrorBody
  const code = body.errors?.[0]?.code ?? ''
  assert.ok(codes.has(code), `${response.status} ${code}: ${text}`)
  return code
}

describe('the registry API over HTTP, fuzzed', () => {
  let stack: RegistryStack
  let alice: Pusher
  let blob: { digest: string; size: number; bytes: Buffer }
  let config: { digest: string; size: number }
  before(async () => {
    stack = await startRegistryStack()
    alice = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'fuzz'))
    const bytes = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(30))
    blob = { ...(await alice.blob(bytes)), bytes }
    config = await alice.blob(JSON.stringify({ architecture: 'amd64', os: 'linux' }))
  })
  after(() => stack?.close())

  /** Valid manifests over the pushed blobs, mutated; so some PUTs succeed, most are refused. */
  const pushableManifestArb = manifestBytesArb.map((bytes) => {
    const text = Buffer.from(bytes).toString('utf8')
    return Buffer.from(
      text
        .replace(/sha256:[0-9a-f]{64}/g, (_, offset: number) =>
          offset % 2 === 0 ? blob.digest : config.digest,
        )
        .replace(/"size":\d+/g, (_, offset: number) =>
          offset % 2 === 0 ? `"size":${blob.size}` : `"size":${config.size}`,
        ),
    )
  })

  it('PUT manifest with any body and Content-Type: 201, or 4xx with the right code and the tag left as it was', async () => {
    const valid = await alice.image('fuzz')
    assert.equal((await alice.putManifest('fuzz', valid.bytes)).status, 201)
    let tagged = valid.digest
    const outcomes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(
        pushableManifestArb,
        fc.option(mediaTypeArb, { nil: undefined }),
        fc.constantFrom('tag', 'digest', 'wrong digest'),
        async (bytes, contentType, by) => {
          const reference =
            by === 'tag' ? 'fuzz' : by === 'digest' ? sha256(bytes) : `sha256:${'0'.repeat(64)}`
          const response = await alice.fetch(`/v2/${alice.name}/manifests/${reference}`, {
            method: 'PUT',
            headers: contentType === undefined ? {} : { 'content-type': contentType },
            body: bytes,
          })
          let outcome = String(response.status)
          if (response.status === 201) {
            await response.arrayBuffer()
            if (by === 'tag') tagged = sha256(bytes)
          } else {
            outcome = await expectOciRefusal(response, MANIFEST_CODES)
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
          const head = await alice.fetch(`/v2/${alice.name}/manifests/fuzz`, { method: 'HEAD' })
          assert.equal(head.status, 200)
          assert.equal(head.headers.get('docker-content-digest'), tagged, 'the tag did not move')
        },
      ),
      { numRuns: 150 },
    )
    assert.ok(
      outcomes.has('201') && outcomes.has('MANIFEST_INVALID'),
      JSON.stringify([...outcomes]),
    )
  })

  it('any manifest reference or repository name in the path: a 4xx with the right code, never a 5xx', async () => {
    const segment = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.constantFrom('..', '.', 'sha256:', `sha512:${'a'.repeat(64)}`, 'A'.repeat(200), '%00'),
    )
    await fc.assert(
      fc.asyncProperty(
        segment,
        segment,
        fc.constantFrom('GET', 'PUT', 'DELETE'),
        async (name, reference, method) => {
          const path = `/v2/${alice.name}${name ? `/${encodeURIComponent(name)}` : ''}/manifests/${encodeURIComponent(reference)}`
          const response = await alice.fetch(path, {
            method,
            ...(method === 'PUT'
              ? { body: '{}', headers: { 'content-type': 'application/json' } }
              : {}),
          })
          if (response.status === 200 || response.status === 202) {
            await response.arrayBuffer()
            return
          }
          await expectOciRefusal(
            response,
            new Set([
              ...MANIFEST_CODES,
              'MANIFEST_UNKNOWN',
              'NAME_UNKNOWN',
              'DENIED',
              'UNAUTHORIZED',
              'UNSUPPORTED',
            ]),
          )
        },
      ),
      { numRuns: 150 },
    )
  })

  it('listings with any n, last and artifactType: 200 with a bounded page, or 400, never a 5xx', async () => {
    const value = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.integer({ min: -5, max: 5000 }).map(String),
      fc.constantFrom('0', '1', '1000', '1001', '1e3', '0x10', ' 5', '9'.repeat(30)),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          `/v2/${alice.name}/tags/list`,
          '/v2/_catalog',
          `/v2/${alice.name}/referrers/${blob.digest}`,
        ),
        fc.record({ n: value, last: value, artifactType: value }, { requiredKeys: [] }),
        async (path, params) => {
          const query = new URLSearchParams(params as Record<string, string>)
          const response = await alice.fetch(`${path}?${query}`)
          if (response.status !== 200) {
            await expectOciRefusal(
              response,
              new Set([
                'PAGINATION_NUMBER_INVALID',
                'QUERY_PARAMETER_INVALID',
                'DENIED',
                'UNAUTHORIZED',
                'NAME_UNKNOWN',
              ]),
            )
            return
          }
          const body = (await response.json()) as {
            tags?: unknown[]
            repositories?: unknown[]
            manifests?: unknown[]
          }
          const list = body.tags ?? body.repositories ?? body.manifests ?? []
          // The referrers listing is not paged by n (the distribution spec gives it none).
          if (!path.includes('/referrers/') && params.n !== undefined && /^\d+$/.test(params.n)) {
            assert.ok(list.length <= Number(params.n), `${list.length} > n=${params.n}`)
          }
        },
      ),
      { numRuns: 150 },
    )
  })

  it('upload starts and finishes with any digest, mount and from: 201/202, or 4xx with the right code', async () => {
    const digestish = fc.oneof(
      fc.constantFrom(
        blob.digest,
        config.digest,
        `sha256:${'0'.repeat(64)}`,
        'sha256:',
        `sha512:${'a'.repeat(128)}`,
      ),
      fc.string({ maxLength: 80 }),
    )
    const from = fc.oneof(
      fc.constantFrom(alice.name, stack.nameOf(stack.bob, 'app'), '', '..'),
      fc.string({ maxLength: 30 }),
    )
    const codes = new Set([
      'DIGEST_INVALID',
      'NAME_INVALID',
      'NAME_UNKNOWN',
      'BLOB_UNKNOWN',
      'BLOB_UPLOAD_INVALID',
      'BLOB_UPLOAD_UNKNOWN',
      'SIZE_INVALID',
      'DENIED',
      'UNAUTHORIZED',
      'UNSUPPORTED',
    ])
    await fc.assert(
      fc.asyncProperty(
        fc.record({ digest: digestish, mount: digestish, from }, { requiredKeys: [] }),
        fc.option(fc.uint8Array({ maxLength: 16 }), { nil: undefined }),
        fc.option(digestish, { nil: undefined }),
        async (params, body, finish) => {
          const query = new URLSearchParams(params as Record<string, string>)
          const started = await alice.fetch(`/v2/${alice.name}/blobs/uploads/?${query}`, {
            method: 'POST',
            ...(body ? { body, headers: { 'content-type': 'application/octet-stream' } } : {}),
          })
          if (started.status !== 201 && started.status !== 202) {
            await expectOciRefusal(started, codes)
            return
          }
          await started.arrayBuffer()
          const location = started.headers.get('location')!
          if (started.status === 201 || finish === undefined) {
            if (started.status === 202) await alice.fetch(location, { method: 'DELETE' })
            return
          }
          const separator = location.includes('?') ? '&' : '?'
          const put = await alice.fetch(
            `${location}${separator}digest=${encodeURIComponent(finish)}`,
            { method: 'PUT' },
          )
          if (put.status !== 201) {
            await expectOciRefusal(put, codes)
            await alice.fetch(location, { method: 'DELETE' })
          } else await put.arrayBuffer()
        },
      ),
      { numRuns: 120 },
    )
  })

  it('PATCH with any Content-Range: 202, or 416/400 RANGE_INVALID, never a 5xx', async () => {
    const rangeChars = fc.constantFrom(...'0123456789-/ *=bytes,'.split(''))
    const rangeArb = fc.oneof(
      fc.string({ unit: rangeChars, maxLength: 30 }),
      // What a header value may hold (fetch refuses the rest): visible Latin-1, space and tab.
      fc.string({
        unit: fc
          .integer({ min: 8, max: 255 })
          .filter((c) => c === 9 || (c >= 32 && c !== 127))
          .map((c) => String.fromCharCode(c)),
        maxLength: 20,
      }),
      fc
        .tuple(fc.bigInt({ min: 0n, max: 10n ** 18n }), fc.bigInt({ min: 0n, max: 10n ** 18n }))
        .map(([a, b]) => `${a}-${b}`),
      fc.nat({ max: 5 }).map((n) => `0-${n}`),
    )
    await fc.assert(
      fc.asyncProperty(
        rangeArb,
        fc.uint8Array({ minLength: 1, maxLength: 8 }),
        async (range, body) => {
          const started = await alice.fetch(`/v2/${alice.name}/blobs/uploads/`, { method: 'POST' })
          assert.equal(started.status, 202)
          const location = started.headers.get('location')!
          const patched = await alice.fetch(location, {
            method: 'PATCH',
            headers: { 'content-type': 'application/octet-stream', 'content-range': range },
            body,
          })
          if (patched.status !== 202) {
            await expectOciRefusal(
              patched,
              new Set(['RANGE_INVALID', 'SIZE_INVALID', 'BLOB_UPLOAD_INVALID']),
            )
          } else await patched.arrayBuffer()
          // The session is still there and says how much it holds.
          const status = await alice.fetch(location)
          assert.equal(status.status, 204)
          const end = Number(status.headers.get('range')?.split('-')[1])
          assert.ok(end <= body.byteLength, `${status.headers.get('range')}`)
          await alice.fetch(location, { method: 'DELETE' })
        },
      ),
      { numRuns: 80 },
    )
  })

  it('GET blob with any Range: 200, 206 with the right bytes, or 416, never a 5xx', async () => {
    const size = blob.bytes.byteLength
    const rangeArb = fc.oneof(
      fc
        .tuple(fc.nat({ max: size + 5 }), fc.nat({ max: size + 5 }))
        .map(([a, b]) => `bytes=${a}-${b}`),
      fc.nat({ max: size + 5 }).map((n) => `bytes=-${n}`),
      fc.nat({ max: size + 5 }).map((n) => `bytes=${n}-`),
      fc.string({ unit: fc.constantFrom(...'bytes=0123456789-, '.split('')), maxLength: 30 }),
      fc.constantFrom(
        'bytes=99999999999999999999-1',
        'bytes=0-99999999999999999999',
        'items=0-1',
        '',
      ),
    )
    await fc.assert(
      fc.asyncProperty(rangeArb, async (range) => {
        const response = await alice.fetch(`/v2/${alice.name}/blobs/${blob.digest}`, {
          headers: { range },
        })
        if (response.status === 416) {
          // From the AppView (RANGE_INVALID), or from the hold its 307 led to (XRPC body).
          await response.arrayBuffer()
          const contentRange = response.headers.get('content-range')
          if (contentRange !== null) assert.equal(contentRange, `bytes */${size}`)
          return
        }
        const bytes = Buffer.from(await response.arrayBuffer())
        if (response.status === 200) {
          assert.deepEqual(bytes, blob.bytes)
          return
        }
        assert.equal(response.status, 206, `${range}: ${response.status}`)
        const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers.get('content-range') ?? '')
        assert.ok(match, `${range}: content-range ${response.headers.get('content-range')}`)
        const [first, last] = [Number(match[1]), Number(match[2])]
        assert.deepEqual(bytes, blob.bytes.subarray(first, last + 1))
      }),
      { numRuns: 150 },
    )
  })

  /**
   * A registry token grants no action that was not asked for; on repositories, anonymous
   * callers pull at most and alice pushes or deletes only in her own namespace.
   */
  function assertNoWiderGrant(token: string, scopes: string[], signedIn: boolean): void {
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
      access?: unknown
    }
    const requested = parseScopes(scopes)
    const own = [alice.name.split('/')[0]!, 'alice.test', stack.alice.did]
    for (const granted of fromAccessEntries(claims.access)) {
      for (const action of granted.actions) {
        assert.ok(
          requested.some(
            (r) =>
              r.type === granted.type &&
              r.name === granted.name &&
              (r.actions.has(action) || r.actions.has('*')),
          ),
          `granted ${action} on ${granted.name}, asked ${JSON.stringify(scopes)}`,
        )
        // registry:catalog is granted as asked (the catalog is a public listing).
        if (granted.type !== 'repository') continue
        if (!signedIn) assert.equal(action, 'pull', 'anonymous: pull at most')
        else if (action !== 'pull') {
          assert.ok(
            own.some((o) => granted.name.startsWith(`${o}/`)),
            `alice granted ${action} on ${granted.name}`,
          )
        }
      }
    }
  }

  /** Scope strings, well-formed ones over known and odd names, and anything at all. */
  const scopeArb = () => {
    const actions = fc.constantFrom(
      'pull',
      'push',
      'delete',
      '*',
      'pull,push',
      'pull,push,delete',
      '',
      'PULL',
      'x y',
    )
    const names = fc.oneof(
      fc.constantFrom(
        alice.name,
        stack.nameOf(stack.bob, 'app'),
        'catalog',
        `${alice.name}/sub`,
        'did:plc:x/app',
        'alice.test/app',
      ),
      fc.string({ maxLength: 30 }),
    )
    return fc.oneof(
      fc
        .tuple(
          fc.constantFrom('repository', 'registry', 'repository(plugin)', 'REPO', ''),
          names,
          actions,
        )
        .map(([type, name, action]) => `${type}:${name}:${action}`),
      fc.string({ maxLength: 60 }),
      fc.string({ unit: 'binary', maxLength: 30 }),
    )
  }

  it('token requests with any scope, service and account: 200 granting no more than asked, or 400/401, never a 5xx', async () => {
    const statuses = new Map<number, number>()
    const basic = `Basic ${Buffer.from(`${stack.alice.did}:${stack.alice.appPassword}`).toString('base64')}`
    await fc.assert(
      fc.asyncProperty(
        fc.array(scopeArb(), { maxLength: 4 }),
        fc.option(fc.oneof(fc.constant(stack.host), fc.string({ maxLength: 20 })), {
          nil: undefined,
        }),
        fc.option(fc.oneof(fc.constant(stack.alice.did), fc.string({ maxLength: 20 })), {
          nil: undefined,
        }),
        fc.constantFrom('alice', 'anonymous', 'garbage'),
        async (scopes, service, account, who) => {
          const query = new URLSearchParams()
          for (const scope of scopes) query.append('scope', scope)
          if (service !== undefined) query.set('service', service)
          if (account !== undefined) query.set('account', account)
          const headers: Record<string, string> =
            who === 'alice'
              ? { authorization: basic }
              : who === 'garbage'
                ? { authorization: 'Basic !!!' }
                : {}
          const response = await fetch(`${stack.url}/auth/token?${query}`, { headers })
          const text = await response.text()
          assert.ok(response.status < 500, `${response.status}: ${text}`)
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
          if (response.status !== 200) {
            assert.ok([400, 401].includes(response.status), `${response.status}: ${text}`)
            return
          }
          const { token } = JSON.parse(text) as { token: string }
          assertNoWiderGrant(token, scopes, who === 'alice')
        },
      ),
      { numRuns: 300 },
    )
    assert.ok(statuses.has(200) && statuses.has(400), JSON.stringify([...statuses]))
  })

  it('OAuth2 password token requests with any form: 200 granting no more than asked, or 400/401, never a 5xx', async () => {
    const statuses = new Map<number, number>()
    const field = fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.string({ unit: 'binary', maxLength: 10 }),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.array(scopeArb(), { maxLength: 3 }),
        // Mostly well-formed requests, so that some are granted.
        fc.option(
          fc.oneof(
            { arbitrary: fc.constant('password'), weight: 4 },
            { arbitrary: fc.constantFrom('refresh_token', 'client_credentials'), weight: 1 },
            { arbitrary: field, weight: 1 },
          ),
          { nil: undefined, freq: 8 },
        ),
        fc.option(
          fc.oneof(
            {
              arbitrary: fc.constantFrom(stack.alice.did, 'alice.test', ' alice.test '),
              weight: 4,
            },
            { arbitrary: field, weight: 1 },
          ),
          { nil: undefined, freq: 8 },
        ),
        // Wrong passwords are rare: each counts toward alice's failed sign-ins.
        fc.oneof(
          { arbitrary: fc.constant(stack.alice.appPassword), weight: 6 },
          { arbitrary: field, weight: 1 },
        ),
        fc.option(field, { nil: undefined }),
        async (scopes, grantType, username, password, extra) => {
          const form = new URLSearchParams()
          if (grantType !== undefined) form.set('grant_type', grantType)
          if (username !== undefined) form.set('username', username)
          form.set('password', password)
          form.set('service', stack.host)
          if (extra !== undefined) form.set('client_id', extra)
          for (const scope of scopes) form.append('scope', scope)
          const response = await fetch(`${stack.url}/auth/token`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: form,
          })
          const text = await response.text()
          assert.ok(response.status < 500, `${response.status}: ${text}`)
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
          if (response.status !== 200) {
            assert.ok([400, 401].includes(response.status), `${response.status}: ${text}`)
            return
          }
          const body = JSON.parse(text) as { access_token?: string; token?: string }
          assertNoWiderGrant((body.access_token ?? body.token)!, scopes, true)
        },
      ),
      { numRuns: 100 },
    )
    assert.ok(statuses.has(200) && statuses.has(400), JSON.stringify([...statuses]))
  })
})
