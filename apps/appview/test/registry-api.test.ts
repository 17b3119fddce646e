// The distribution API over raw HTTP against a real PLC, PDS, hold (filesystem storage,
// bytes streamed through the hold) and AppView: every endpoint and its error paths.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { parseBearerChallenge } from '@atcr/core/oci'
import { errorCode, type ImageManifest, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

const PART = 5 * 1024 * 1024

describe('OCI distribution API (/v2) on a filesystem hold', () => {
  let stack: RegistryStack
  let alice: Pusher
  let name: string

  before(async () => {
    stack = await startRegistryStack({ registry: { upload_part_size: PART } })
    name = stack.nameOf(stack.alice, 'app')
    alice = new Pusher(stack, stack.alice, name)
  })
  after(async () => {
    await stack?.close()
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  describe('/v2/', () => {
    it('answers 401 with a Bearer challenge without a token, 200 {} with one', async () => {
      const anonymous = await stack.request('/v2/')
      assert.equal(anonymous.status, 401)
      assert.equal(anonymous.headers.get('docker-distribution-api-version'), 'registry/2.0')
      const challenge = parseBearerChallenge(anonymous.headers.get('www-authenticate') ?? '')
      assert.equal(challenge?.realm, `${stack.url}/auth/token`)
      assert.equal(challenge?.service, stack.host)
      assert.equal(await errorCode(anonymous), 'UNAUTHORIZED')

      const signedIn = await stack.request('/v2/', { as: stack.alice, scopes: [] })
      assert.equal(signedIn.status, 200)
      assert.equal(signedIn.headers.get('docker-distribution-api-version'), 'registry/2.0')
      assert.deepEqual(await signedIn.json(), {})
    })

    it('refuses forged and expired tokens with 401 invalid_token', async () => {
      const token = await stack.token(stack.alice, [repoScope(name)])
      const [header, payload, signature] = token.split('.')
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())
      const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: stack.bob.did })).toString('base64url')}.${signature}`
      const expired = `${header}.${Buffer.from(JSON.stringify({ ...claims, exp: 1000 })).toString('base64url')}.${signature}`
      for (const bad of [forged, expired, 'not-a-jwt']) {
        const response = await fetch(`${stack.url}/v2/${name}/tags/list`, {
          headers: { authorization: `Bearer ${bad}` },
        })
        assert.equal(response.status, 401)
        assert.equal(await errorCode(response), 'UNAUTHORIZED')
        const challenge = parseBearerChallenge(response.headers.get('www-authenticate') ?? '')
        assert.equal(challenge?.error, 'invalid_token')
        assert.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0')
      }
    })
  })

  describe('blob uploads', () => {
    it('takes a monolithic upload and serves it back with HEAD, GET and ranges', async () => {
      const bytes = randomBytes(3000)
      const { digest } = await alice.blob(bytes)
      const head = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), '3000')
      assert.equal(head.headers.get('docker-content-digest'), digest)

      const get = await alice.fetch(`/v2/${name}/blobs/${digest}`)
      assert.equal(get.status, 200)
      assert.deepEqual(Buffer.from(await get.arrayBuffer()), bytes)

      const ranged = await alice.fetch(`/v2/${name}/blobs/${digest}`, {
        headers: { range: 'bytes=10-19' },
      })
      assert.equal(ranged.status, 206)
      assert.equal(ranged.headers.get('content-range'), 'bytes 10-19/3000')
      assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), bytes.subarray(10, 20))

      const past = await alice.fetch(`/v2/${name}/blobs/${digest}`, {
        headers: { range: 'bytes=5000-6000' },
      })
      // Answered by the hold the read was redirected to (as S3 would answer a presigned one).
      assert.equal(past.status, 416)
      assert.equal(past.headers.get('content-range'), 'bytes */3000')
    })

    it('takes chunks with Content-Range, refusing misplaced ones with 416 and the current Range', async () => {
      const bytes = randomBytes(PART + 1234) // more than one part: exercises multipart
      const digest = sha256(bytes)
      const start = await alice.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
      assert.equal(start.status, 202)
      assert.equal(start.headers.get('range'), '0-0')
      const uuid = start.headers.get('docker-upload-uuid')
      assert.ok(uuid)
      const location = start.headers.get('location')!
      assert.equal(location, `/v2/${name}/blobs/uploads/${uuid}`)

      const first = bytes.subarray(0, 4000)
      const patch1 = await alice.fetch(location, {
        method: 'PATCH',
        headers: { 'content-range': '0-3999', 'content-type': 'application/octet-stream' },
        body: first,
      })
      assert.equal(patch1.status, 202)
      assert.equal(patch1.headers.get('range'), '0-3999')

      const misplaced = await alice.fetch(location, {
        method: 'PATCH',
        headers: { 'content-range': '5000-5999' },
        body: bytes.subarray(5000, 6000),
      })
      assert.equal(misplaced.status, 416)
      assert.equal(misplaced.headers.get('range'), '0-3999')
      assert.equal(await errorCode(misplaced), 'RANGE_INVALID')

      const overlapping = await alice.fetch(location, {
        method: 'PATCH',
        headers: { 'content-range': '3000-3999' },
        body: bytes.subarray(3000, 4000),
      })
      assert.equal(overlapping.status, 416)

      const status = await alice.fetch(location)
      assert.equal(status.status, 204)
      assert.equal(status.headers.get('range'), '0-3999')

      const rest = bytes.subarray(4000)
      const patch2 = await alice.fetch(location, {
        method: 'PATCH',
        headers: { 'content-range': `4000-${bytes.length - 1}` },
        body: rest,
      })
      assert.equal(patch2.status, 202, await patch2.clone().text())
      const done = await alice.fetch(`${location}?digest=${digest}`, { method: 'PUT' })
      assert.equal(done.status, 201, await done.clone().text())
      assert.equal(done.headers.get('location'), `/v2/${name}/blobs/${digest}`)
      assert.equal(done.headers.get('docker-content-digest'), digest)

      const get = await alice.fetch(`/v2/${name}/blobs/${digest}`)
      assert.equal(get.status, 200)
      const back = Buffer.from(await get.arrayBuffer())
      assert.equal(back.length, bytes.length)
      assert.ok(back.equals(bytes))
    })

    it('streams a large blob in one PATCH, and finishes with a last chunk on PUT', async () => {
      const bytes = randomBytes(2 * PART + 77)
      const digest = sha256(bytes)
      const start = await alice.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
      const location = start.headers.get('location')!
      const patch = await alice.fetch(location, {
        method: 'PATCH',
        body: bytes.subarray(0, 2 * PART),
      })
      assert.equal(patch.status, 202)
      assert.equal(patch.headers.get('range'), `0-${2 * PART - 1}`)
      const done = await alice.fetch(`${location}?digest=${digest}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: bytes.subarray(2 * PART),
      })
      assert.equal(done.status, 201, await done.clone().text())
      const head = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method: 'HEAD' })
      assert.equal(head.headers.get('content-length'), String(bytes.length))
    })

    it('takes a body of unknown length (chunked transfer) across several parts', async () => {
      // 2.5 parts: the half part at the end starts streaming before the body ends, is
      // abandoned when it does, and goes to the hold whole with the final PUT.
      const bytes = randomBytes(2 * PART + PART / 2)
      const digest = sha256(bytes)
      const start = await alice.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
      const location = start.headers.get('location')!
      const chunks = async function* () {
        for (let i = 0; i < bytes.length; i += 256 * 1024) yield bytes.subarray(i, i + 256 * 1024)
      }
      const patch = await alice.fetch(location, {
        method: 'PATCH',
        body: ReadableStream.from(chunks()),
        duplex: 'half',
      } as RequestInit)
      assert.equal(patch.status, 202, await patch.clone().text())
      assert.equal(patch.headers.get('range'), `0-${bytes.length - 1}`)
      const done = await alice.fetch(`${location}?digest=${digest}`, { method: 'PUT' })
      assert.equal(done.status, 201, await done.clone().text())
      const get = await alice.fetch(`/v2/${name}/blobs/${digest}`)
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(bytes))
    })

    it('refuses a wrong digest on completion with DIGEST_INVALID and drops the upload', async () => {
      const start = await alice.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
      const location = start.headers.get('location')!
      await alice.fetch(location, { method: 'PATCH', body: 'some bytes' })
      const wrong = sha256('other bytes')
      const done = await alice.fetch(`${location}?digest=${wrong}`, { method: 'PUT' })
      assert.equal(done.status, 400)
      assert.equal(await errorCode(done), 'DIGEST_INVALID')
      const status = await alice.fetch(location)
      assert.equal(status.status, 404)
      assert.equal(await errorCode(status), 'BLOB_UPLOAD_UNKNOWN')
      const head = await alice.fetch(`/v2/${name}/blobs/${wrong}`, { method: 'HEAD' })
      assert.equal(head.status, 404)
    })

    it('refuses a malformed digest with 400 DIGEST_INVALID, never 500', async () => {
      for (const path of [
        `/v2/${name}/blobs/sha256:xyz`,
        `/v2/${name}/blobs/md5:${'0'.repeat(32)}`,
        `/v2/${name}/blobs/uploads/?digest=sha256:short`,
        `/v2/${name}/referrers/nonsense:1`,
      ]) {
        const response = await alice.fetch(path, {
          method: path.includes('uploads') ? 'POST' : 'GET',
        })
        assert.equal(response.status, 400, path)
        assert.equal(await errorCode(response), 'DIGEST_INVALID', path)
      }
    })

    it('cancels an upload with DELETE', async () => {
      // Without the trailing slash, too.
      const start = await alice.fetch(`/v2/${name}/blobs/uploads`, { method: 'POST' })
      assert.equal(start.status, 202)
      const location = start.headers.get('location')!
      await alice.fetch(location, { method: 'PATCH', body: 'abandoned' })
      const cancel = await alice.fetch(location, { method: 'DELETE' })
      assert.equal(cancel.status, 204)
      const again = await alice.fetch(location)
      assert.equal(again.status, 404)
    })

    it('mounts a blob from a repository that holds it (201), otherwise opens a session (202)', async () => {
      const { digest } = await alice.blob('mount me')
      const other = stack.nameOf(stack.alice, 'other')
      const pusher = new Pusher(stack, stack.alice, other)
      const mounted = await pusher.fetch(
        `/v2/${other}/blobs/uploads/?mount=${digest}&from=${name}`,
        { method: 'POST' },
      )
      assert.equal(mounted.status, 201)
      assert.equal(mounted.headers.get('docker-content-digest'), digest)
      assert.equal(mounted.headers.get('location'), `/v2/${other}/blobs/${digest}`)
      assert.equal((await pusher.fetch(`/v2/${other}/blobs/${digest}`)).status, 200)
      // Without `from`, or from a repository that does not hold it, the blob is uploaded.
      const fresh = await alice.blob('only in app')
      const third = stack.nameOf(stack.alice, 'third')
      const thirdPusher = new Pusher(stack, stack.alice, third)
      for (const query of [`mount=${fresh.digest}`, `mount=${fresh.digest}&from=${other}`]) {
        const refused = await thirdPusher.fetch(`/v2/${third}/blobs/uploads/?${query}`, {
          method: 'POST',
        })
        assert.equal(refused.status, 202, query)
      }
      assert.equal((await thirdPusher.fetch(`/v2/${third}/blobs/${fresh.digest}`)).status, 404)
      const missing = await pusher.fetch(
        `/v2/${other}/blobs/uploads/?mount=${sha256('never pushed')}&from=${name}`,
        { method: 'POST' },
      )
      assert.equal(missing.status, 202)
      assert.ok(missing.headers.get('docker-upload-uuid'))
    })

    it('stores sha512 blobs end to end, monolithic and chunked', async () => {
      const sha512 = (b: Uint8Array) => `sha512:${createHash('sha512').update(b).digest('hex')}`
      const bytes = randomBytes(1500)
      const digest = sha512(bytes)
      const put = await alice.fetch(`/v2/${name}/blobs/uploads/?digest=${digest}`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: bytes,
      })
      assert.equal(put.status, 201, await put.clone().text())
      assert.equal(put.headers.get('docker-content-digest'), digest)
      const get = await alice.fetch(`/v2/${name}/blobs/${digest}`)
      assert.equal(get.status, 200)
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(bytes))
      const head = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method: 'HEAD' })
      assert.equal(head.headers.get('content-length'), '1500')
      assert.equal(head.headers.get('docker-content-digest'), digest)

      // Chunked: the digest is named only at the end, and checked against the stored bytes.
      const chunked = randomBytes(PART + 10)
      for (const [named, status] of [
        [sha512(randomBytes(8)), 400],
        [sha512(chunked), 201],
      ] as const) {
        const start = await alice.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
        const location = start.headers.get('location')!
        assert.equal((await alice.fetch(location, { method: 'PATCH', body: chunked })).status, 202)
        const done = await alice.fetch(`${location}?digest=${named}`, { method: 'PUT' })
        assert.equal(done.status, status, await done.clone().text())
        const back = await alice.fetch(`/v2/${name}/blobs/${named}`, { method: 'HEAD' })
        assert.equal(back.status, status === 201 ? 200 : 404)
      }
    })

    it('answers BLOB_UNKNOWN for a blob nobody pushed, and deletes blobs from the repository', async () => {
      const missing = await alice.fetch(`/v2/${name}/blobs/${sha256('nothing')}`)
      assert.equal(missing.status, 404)
      assert.equal(await errorCode(missing), 'BLOB_UNKNOWN')
      const { digest } = await alice.blob('delete me')
      const deleted = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method: 'DELETE' })
      assert.equal(deleted.status, 202)
      for (const method of ['GET', 'HEAD']) {
        const gone = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method })
        assert.equal(gone.status, 404, method)
      }
      const again = await alice.fetch(`/v2/${name}/blobs/${digest}`, { method: 'DELETE' })
      assert.equal(again.status, 404)
      assert.equal(await errorCode(again), 'BLOB_UNKNOWN')
    })

    it('answers 416 for a range that ends before it starts', async () => {
      const { digest } = await alice.blob(randomBytes(1000))
      const response = await alice.fetch(`/v2/${name}/blobs/${digest}`, {
        headers: { range: 'bytes=500-0' },
      })
      assert.equal(response.status, 416)
      assert.equal(await errorCode(response), 'RANGE_INVALID')
    })
  })

  describe('manifests and tags', () => {
    let image: ImageManifest

    before(async () => {
      image = await alice.image('first')
    })

    it('stores a manifest by tag as records in the owner PDS and serves the exact bytes back', async () => {
      const put = await alice.putManifest('v1', image.bytes)
      assert.equal(put.status, 201, await put.clone().text())
      assert.equal(put.headers.get('docker-content-digest'), image.digest)
      assert.equal(put.headers.get('location'), `/v2/${name}/manifests/${image.digest}`)

      for (const reference of ['v1', image.digest]) {
        const get = await alice.fetch(`/v2/${name}/manifests/${reference}`)
        assert.equal(get.status, 200)
        assert.equal(get.headers.get('content-type'), image.mediaType)
        assert.equal(get.headers.get('docker-content-digest'), image.digest)
        assert.ok(Buffer.from(await get.arrayBuffer()).equals(image.bytes))
        const head = await alice.fetch(`/v2/${name}/manifests/${reference}`, { method: 'HEAD' })
        assert.equal(head.status, 200)
        assert.equal(head.headers.get('content-length'), String(image.bytes.length))
        assert.equal(head.headers.get('docker-content-digest'), image.digest)
      }

      const agent = stack.alice.agent
      const rkey = image.digest.slice('sha256:'.length)
      const manifest = await agent.com.atproto.repo.getRecord({
        repo: stack.alice.did,
        collection: 'io.atcr.manifest',
        rkey,
      })
      const value = manifest.data.value as Record<string, unknown>
      assert.equal(value.repository, 'app')
      assert.equal(value.digest, image.digest)
      assert.equal(value.holdDid, stack.hold.did)
      assert.equal(value.mediaType, image.mediaType)
      assert.equal((value.layers as unknown[]).length, 1)
      assert.ok(value.manifestBlob)
      const tag = await agent.com.atproto.repo.getRecord({
        repo: stack.alice.did,
        collection: 'io.atcr.tag',
        rkey: 'app:v1',
      })
      const tagValue = tag.data.value as Record<string, unknown>
      assert.equal(tagValue.manifest, `at://${stack.alice.did}/io.atcr.manifest/${rkey}`)
      assert.equal(tagValue.manifestDigest, image.digest)
    })

    it('reaches the same repository by handle and by DID', async () => {
      for (const spelling of [`alice.test/app`, `${stack.alice.did}/app`]) {
        const response = await stack.request(`/v2/${spelling}/manifests/v1`, {
          as: null,
          scopes: [repoScope(spelling, 'pull')],
        })
        assert.equal(response.status, 200, spelling)
        assert.equal(response.headers.get('docker-content-digest'), image.digest)
      }
    })

    it('lets anonymous callers with a pull token read, and challenges those without one', async () => {
      const anonymous = await fetch(`${stack.url}/v2/${name}/manifests/v1`)
      assert.equal(anonymous.status, 401)
      const challenge = parseBearerChallenge(anonymous.headers.get('www-authenticate') ?? '')
      assert.equal(challenge?.scope, `repository:${name}:pull`)
      const pulled = await stack.request(`/v2/${name}/manifests/v1`, {
        as: null,
        scopes: [repoScope(name, 'pull')],
      })
      assert.equal(pulled.status, 200)
    })

    it('refuses a manifest whose blobs were never pushed, writing nothing', async () => {
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: {
            mediaType: 'application/vnd.oci.image.config.v1+json',
            digest: sha256('missing config'),
            size: 14,
          },
          layers: [],
        }),
      )
      const put = await alice.putManifest('broken', manifest)
      assert.equal(put.status, 400)
      assert.equal(await errorCode(put), 'MANIFEST_BLOB_UNKNOWN')
      const get = await alice.fetch(`/v2/${name}/manifests/broken`)
      assert.equal(get.status, 404)
      assert.equal(await errorCode(get), 'MANIFEST_UNKNOWN')
      const records = await stack.alice.agent.com.atproto.repo.listRecords({
        repo: stack.alice.did,
        collection: 'io.atcr.manifest',
      })
      assert.ok(!records.data.records.some((r) => r.uri.endsWith(sha256(manifest).slice(7))))
    })

    it('refuses an oversize manifest with 413 and writes nothing', async () => {
      const limit = stack.appview.ctx.config.registry.max_manifest_size
      const big = await alice.image('big', {
        annotations: { padding: 'x'.repeat(limit) },
      })
      const put = await alice.putManifest('big', big.bytes)
      assert.equal(put.status, 413)
      assert.equal(await errorCode(put), 'MANIFEST_INVALID')
      const get = await alice.fetch(`/v2/${name}/manifests/big`)
      assert.equal(get.status, 404)
    })

    it('refuses invalid names, tags and references', async () => {
      const cases: [string, string, number][] = [
        [`/v2/alice.test/UPPER/tags/list`, 'NAME_INVALID', 400],
        [`/v2/noslash/tags/list`, 'NAME_INVALID', 400],
        [`/v2/not_a_handle!/app/tags/list`, 'NAME_INVALID', 400],
        [`/v2/${name}/manifests/-bad-tag`, 'TAG_INVALID', 400],
        [`/v2/${name}/manifests/sha256:nothex`, 'DIGEST_INVALID', 400],
        [`/v2/nobody.test/app/tags/list`, 'NAME_UNKNOWN', 404],
        [`/v2/did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app/tags/list`, 'NAME_UNKNOWN', 404],
      ]
      for (const [path, code, status] of cases) {
        const scopeName = path.split('/').slice(2, 4).join('/')
        const response = await stack.request(path, {
          as: null,
          scopes: [repoScope(scopeName, 'pull')],
        })
        assert.equal(response.status, status, path)
        assert.equal(await errorCode(response), code, path)
      }
    })

    it("refuses pushes into someone else's namespace", async () => {
      const bob = new Pusher(stack, stack.bob, name)
      // The token endpoint grants bob only pull on alice's name: the push is challenged.
      const upload = await bob.fetch(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
      assert.equal(upload.status, 401)
      const challenge = parseBearerChallenge(upload.headers.get('www-authenticate') ?? '')
      assert.equal(challenge?.error, 'insufficient_scope')
      assert.equal(challenge?.scope, `repository:${name}:pull,push`)
      const put = await bob.putManifest('stolen', image.bytes)
      assert.equal(put.status, 401)
      const tag = await alice.fetch(`/v2/${name}/manifests/stolen`)
      assert.equal(tag.status, 404)
    })

    it('lists tags sorted, paginated with n, last and a Link header', async () => {
      for (const tag of ['b', 'a', 'c']) {
        const put = await alice.putManifest(tag, image.bytes)
        assert.equal(put.status, 201)
      }
      const all = await alice.fetch(`/v2/${name}/tags/list`)
      assert.equal(all.status, 200)
      assert.deepEqual(await all.json(), { name, tags: ['a', 'b', 'c', 'v1'] })
      const first = await alice.fetch(`/v2/${name}/tags/list?n=2`)
      assert.deepEqual(((await first.json()) as { tags: string[] }).tags, ['a', 'b'])
      assert.equal(first.headers.get('link'), `</v2/${name}/tags/list?n=2&last=b>; rel="next"`)
      const second = await alice.fetch(`/v2/${name}/tags/list?n=2&last=b`)
      assert.deepEqual(((await second.json()) as { tags: string[] }).tags, ['c', 'v1'])
      assert.equal(second.headers.get('link'), null)
      const unknown = await alice.fetch(`/v2/${stack.nameOf(stack.alice, 'never')}/tags/list`)
      assert.equal(unknown.status, 401) // the token names another repository
    })

    it('deletes a tag (202), then a manifest by digest with the tags pointing at it', async () => {
      const other = await alice.image('to delete')
      assert.equal((await alice.putManifest('gone', other.bytes)).status, 201)
      assert.equal((await alice.putManifest('gone2', other.bytes)).status, 201)
      const untag = await alice.fetch(`/v2/${name}/manifests/gone`, { method: 'DELETE' })
      assert.equal(untag.status, 202)
      assert.equal((await alice.fetch(`/v2/${name}/manifests/gone`)).status, 404)
      assert.equal((await alice.fetch(`/v2/${name}/manifests/${other.digest}`)).status, 200)

      const remove = await alice.fetch(`/v2/${name}/manifests/${other.digest}`, {
        method: 'DELETE',
      })
      assert.equal(remove.status, 202)
      assert.equal((await alice.fetch(`/v2/${name}/manifests/${other.digest}`)).status, 404)
      assert.equal((await alice.fetch(`/v2/${name}/manifests/gone2`)).status, 404)
      const again = await alice.fetch(`/v2/${name}/manifests/${other.digest}`, {
        method: 'DELETE',
      })
      assert.equal(again.status, 404)
      assert.equal(await errorCode(again), 'MANIFEST_UNKNOWN')
    })

    it('stores Docker schema 2 manifests and manifest lists under their own media types', async () => {
      const v2 = 'application/vnd.docker.distribution.manifest.v2+json'
      const list = 'application/vnd.docker.distribution.manifest.list.v2+json'
      const config = await alice.blob('{"architecture":"amd64","os":"linux"}')
      const layer = await alice.blob('docker layer')
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: v2,
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', ...layer }],
        }),
      )
      assert.equal((await alice.putManifest('docker', manifest, v2)).status, 201)
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: list,
          manifests: [
            {
              mediaType: v2,
              digest: sha256(manifest),
              size: manifest.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        }),
      )
      assert.equal((await alice.putManifest('docker-list', index, list)).status, 201)
      for (const [tag, type, bytes] of [
        ['docker', v2, manifest],
        ['docker-list', list, index],
      ] as const) {
        const get = await alice.fetch(`/v2/${name}/manifests/${tag}`)
        assert.equal(get.headers.get('content-type'), type)
        assert.ok(Buffer.from(await get.arrayBuffer()).equals(bytes))
      }
    })

    it('refuses schema 1, mismatched media types and malformed manifests with MANIFEST_INVALID', async () => {
      const schema1 = Buffer.from(
        JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] }),
      )
      const mismatched = Buffer.from(
        JSON.stringify({ ...image.manifest, mediaType: 'application/vnd.oci.image.index.v1+json' }),
      )
      for (const [bytes, type] of [
        [schema1, 'application/vnd.docker.distribution.manifest.v1+prettyjws'],
        [mismatched, 'application/vnd.oci.image.manifest.v1+json'],
        [Buffer.from('{not json'), 'application/vnd.oci.image.manifest.v1+json'],
        [
          Buffer.from(JSON.stringify({ ...image.manifest, layers: [{ digest: 'nope' }] })),
          'application/vnd.oci.image.manifest.v1+json',
        ],
      ] as const) {
        const put = await alice.putManifest('invalid', bytes, type)
        assert.equal(put.status, 400, bytes.toString())
        assert.equal(await errorCode(put), 'MANIFEST_INVALID', bytes.toString())
      }
      assert.equal((await alice.fetch(`/v2/${name}/manifests/invalid`)).status, 404)
    })

    it('refuses a manifest pushed under a digest it does not have', async () => {
      const put = await alice.putManifest(sha256('something else'), image.bytes)
      assert.equal(put.status, 400)
      assert.equal(await errorCode(put), 'DIGEST_INVALID')
    })
  })

  describe('indexes, artifacts and referrers', () => {
    it('stores an image index whose children were pushed, and refuses one with a missing child', async () => {
      const amd = await alice.image('amd64')
      const arm = await alice.image('arm64')
      assert.equal((await alice.putManifest(amd.digest, amd.bytes)).status, 201)
      assert.equal((await alice.putManifest(arm.digest, arm.bytes)).status, 201)
      const index = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [
            {
              mediaType: amd.mediaType,
              digest: amd.digest,
              size: amd.bytes.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
            {
              mediaType: arm.mediaType,
              digest: arm.digest,
              size: arm.bytes.length,
              platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
            },
          ],
        }),
      )
      const put = await alice.putManifest('multi', index, 'application/vnd.oci.image.index.v1+json')
      assert.equal(put.status, 201, await put.clone().text())
      const get = await alice.fetch(`/v2/${name}/manifests/multi`)
      assert.equal(get.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json')
      assert.ok(Buffer.from(await get.arrayBuffer()).equals(index))

      const broken = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: [{ mediaType: amd.mediaType, digest: sha256('no such manifest'), size: 10 }],
        }),
      )
      const refused = await alice.putManifest(
        'broken-index',
        broken,
        'application/vnd.oci.image.index.v1+json',
      )
      assert.equal(refused.status, 400)
      assert.equal(await errorCode(refused), 'MANIFEST_BLOB_UNKNOWN')
    })

    it('lists referrers of a subject, filtered by artifactType', async () => {
      const subject = await alice.image('subject')
      assert.equal((await alice.putManifest('subject', subject.bytes)).status, 201)
      const empty = await alice.blob('{}')
      const artifact = async (artifactType: string, content: string) => {
        const blob = await alice.blob(content)
        const manifest = {
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          artifactType,
          config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty, data: 'e30=' },
          layers: [{ mediaType: 'text/plain', ...blob }],
          subject: {
            mediaType: subject.mediaType,
            digest: subject.digest,
            size: subject.bytes.length,
          },
          annotations: { 'org.example.kind': artifactType },
          'x-custom-field': { kept: [1, 2, 3] },
        }
        // Pretty-printed on purpose: the bytes, not a re-serialization, must come back.
        const bytes = Buffer.from(JSON.stringify(manifest, null, 3))
        const put = await alice.putManifest(sha256(bytes), bytes)
        assert.equal(put.status, 201, await put.clone().text())
        assert.equal(put.headers.get('oci-subject'), subject.digest)
        const back = await alice.fetch(`/v2/${name}/manifests/${sha256(bytes)}`)
        assert.ok(Buffer.from(await back.arrayBuffer()).equals(bytes))
        return { digest: sha256(bytes), size: bytes.length }
      }
      const signature = await artifact('application/vnd.example.signature', 'sig')
      const sbom = await artifact('application/spdx+json', '{"spdx": true}')

      const all = await alice.fetch(`/v2/${name}/referrers/${subject.digest}`)
      assert.equal(all.status, 200)
      assert.equal(all.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json')
      const index = (await all.json()) as { manifests: Record<string, unknown>[] }
      assert.deepEqual(
        index.manifests.map((m) => [m.digest, m.artifactType, m.size]).sort(),
        [
          [signature.digest, 'application/vnd.example.signature', signature.size],
          [sbom.digest, 'application/spdx+json', sbom.size],
        ].sort(),
      )
      const filtered = await alice.fetch(
        `/v2/${name}/referrers/${subject.digest}?artifactType=application/spdx%2Bjson`,
      )
      assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType')
      const only = (await filtered.json()) as { manifests: Record<string, unknown>[] }
      assert.deepEqual(
        only.manifests.map((m) => m.digest),
        [sbom.digest],
      )

      const none = await alice.fetch(`/v2/${name}/referrers/${sha256('no subject')}`)
      assert.equal(none.status, 200)
      assert.deepEqual(((await none.json()) as { manifests: unknown[] }).manifests, [])
    })
  })

  describe('catalog', () => {
    it('lists repositories pushed through this AppView by handle, paginated', async () => {
      const second = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'second'))
      const image = await second.image('second')
      assert.equal((await second.putManifest('latest', image.bytes)).status, 201)
      const response = await stack.request('/v2/_catalog', {
        as: stack.alice,
        scopes: ['registry:catalog:*'],
      })
      assert.equal(response.status, 200)
      const { repositories } = (await response.json()) as { repositories: string[] }
      assert.ok(repositories.includes('alice.test/app'), JSON.stringify(repositories))
      assert.ok(repositories.includes('alice.test/second'), JSON.stringify(repositories))
      assert.deepEqual(repositories, [...repositories].sort())
      const paged = await stack.request('/v2/_catalog?n=1', { as: stack.alice, scopes: [] })
      assert.equal(((await paged.json()) as { repositories: string[] }).repositories.length, 1)
      assert.match(paged.headers.get('link') ?? '', /rel="next"/)
      const anonymous = await fetch(`${stack.url}/v2/_catalog`)
      assert.equal(anonymous.status, 401)
    })
  })
})
