// What each repository holds, against a real PLC, PDS, hold and AppView: content shared by
// two repositories of one owner, deletes that touch only their repository, referrers per
// repository, the catalog, content rebuilt from the owner's records by a second AppView,
// manifests up to 4 MiB, sha512 all the way, and identities the registry cannot reach.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { NSID, validateRecordJson } from '@atcr/core/lexicons'
import { type DidWebServer, startDidWebServer } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { errorCode, type ImageManifest, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

function sha512(bytes: Uint8Array | string): string {
  return `sha512:${createHash('sha512').update(bytes).digest('hex')}`
}

/** The manifest record for a digest, straight from the owner's PDS (null when absent). */
async function manifestRecord(
  stack: RegistryStack,
  digest: string,
): Promise<Record<string, unknown> | null> {
  const query = new URLSearchParams({
    repo: stack.alice.did,
    collection: NSID.manifest,
    rkey: digest.slice(digest.indexOf(':') + 1),
  })
  const response = await fetch(`${stack.net.pds.url}/xrpc/com.atproto.repo.getRecord?${query}`)
  if (response.status === 400 || response.status === 404) return null
  assert.equal(response.status, 200)
  return ((await response.json()) as { value: Record<string, unknown> }).value
}

async function tagsOf(pusher: Pusher): Promise<string[]> {
  const response = await pusher.fetch(`/v2/${pusher.name}/tags/list`)
  if (response.status === 404) return []
  assert.equal(response.status, 200)
  return ((await response.json()) as { tags: string[] }).tags
}

async function referrersOf(pusher: Pusher, digest: string): Promise<string[]> {
  const response = await pusher.fetch(`/v2/${pusher.name}/referrers/${digest}`)
  assert.equal(response.status, 200)
  const index = (await response.json()) as { manifests: { digest: string }[] }
  return index.manifests.map((m) => m.digest)
}

async function catalog(stack: RegistryStack): Promise<string[]> {
  const response = await stack.request('/v2/_catalog', { as: stack.alice, scopes: [] })
  assert.equal(response.status, 200)
  return ((await response.json()) as { repositories: string[] }).repositories
}

/** Links `digests` into `to` by mounting them from `from`. */
async function mount(to: Pusher, from: Pusher, digests: string[]): Promise<void> {
  for (const digest of digests) {
    const response = await to.fetch(
      `/v2/${to.name}/blobs/uploads/?mount=${digest}&from=${from.name}`,
      { method: 'POST' },
    )
    assert.equal(response.status, 201, await response.text())
  }
}

function blobsOf(image: ImageManifest): string[] {
  const manifest = image.manifest as { config: { digest: string }; layers: { digest: string }[] }
  return [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]
}

describe('repository content', () => {
  let stack: RegistryStack
  let hello: Pusher
  let hello2: Pusher
  let never: Pusher

  before(async () => {
    stack = await startRegistryStack()
    hello = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'hello'))
    hello2 = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'hello2'))
    never = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'never'))
  })
  after(async () => {
    await stack?.close()
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  describe('two repositories sharing a digest', () => {
    let image: ImageManifest
    let sbom: ImageManifest

    before(async () => {
      image = await hello.image('shared')
      assert.equal((await hello.putManifest('latest', image.bytes)).status, 201)
      assert.equal((await hello.putManifest('podman', image.bytes)).status, 201)
      await mount(hello2, hello, blobsOf(image))
      assert.equal((await hello2.putManifest('v1', image.bytes)).status, 201)
      // An artifact about the image, pushed to both repositories.
      sbom = await hello.image('sbom', {
        artifactType: 'application/spdx+json',
        subject: { mediaType: OCI_MANIFEST, digest: image.digest, size: image.bytes.length },
      })
      assert.equal((await hello.putManifest(sbom.digest, sbom.bytes)).status, 201)
      await mount(hello2, hello, blobsOf(sbom))
      assert.equal((await hello2.putManifest(sbom.digest, sbom.bytes)).status, 201)
    })

    it('keeps one record, naming the first repository, and both repositories list the referrer', async () => {
      assert.equal((await manifestRecord(stack, image.digest))?.repository, 'hello')
      assert.deepEqual(await referrersOf(hello, image.digest), [sbom.digest])
      assert.deepEqual(await referrersOf(hello2, image.digest), [sbom.digest])
    })

    it('answers unknown under a repository that never held the content', async () => {
      const manifest = await never.fetch(`/v2/${never.name}/manifests/${image.digest}`)
      assert.equal(manifest.status, 404)
      assert.equal(await errorCode(manifest), 'MANIFEST_UNKNOWN')
      const blob = await never.fetch(`/v2/${never.name}/blobs/${blobsOf(image)[1]}`, {
        method: 'HEAD',
      })
      assert.equal(blob.status, 404)
      const tags = await never.fetch(`/v2/${never.name}/tags/list`)
      assert.equal(tags.status, 404)
      assert.equal(await errorCode(tags), 'NAME_UNKNOWN')
    })

    it('deletes a blob from one repository only', async () => {
      const layer = blobsOf(image)[1]!
      const deleted = await hello2.fetch(`/v2/${hello2.name}/blobs/${layer}`, { method: 'DELETE' })
      assert.equal(deleted.status, 202)
      for (const method of ['GET', 'HEAD']) {
        const gone = await hello2.fetch(`/v2/${hello2.name}/blobs/${layer}`, { method })
        assert.equal(gone.status, 404, method)
        const kept = await hello.fetch(`/v2/${hello.name}/blobs/${layer}`, { method })
        assert.equal(kept.status, 200, method)
      }
    })

    it('deletes a manifest from one repository: the other keeps its tags and referrers', async () => {
      const deleted = await hello2.fetch(`/v2/${hello2.name}/manifests/${image.digest}`, {
        method: 'DELETE',
      })
      assert.equal(deleted.status, 202)
      assert.equal((await hello2.fetch(`/v2/${hello2.name}/manifests/v1`)).status, 404)
      assert.equal((await hello2.fetch(`/v2/${hello2.name}/manifests/${image.digest}`)).status, 404)
      assert.deepEqual(await tagsOf(hello), ['latest', 'podman'])
      for (const reference of ['latest', 'podman', image.digest]) {
        const kept = await hello.fetch(`/v2/${hello.name}/manifests/${reference}`)
        assert.equal(kept.status, 200, reference)
        assert.ok(Buffer.from(await kept.arrayBuffer()).equals(image.bytes))
      }
      assert.deepEqual(await referrersOf(hello, image.digest), [sbom.digest])
      assert.ok(await manifestRecord(stack, image.digest), 'the record stays for hello')
    })

    it('moves the record to a repository that still holds it, and drops it with the last', async () => {
      // The sbom's record names hello; deleting it there leaves hello2 holding it.
      const fromHello = await hello.fetch(`/v2/${hello.name}/manifests/${sbom.digest}`, {
        method: 'DELETE',
      })
      assert.equal(fromHello.status, 202)
      assert.equal((await manifestRecord(stack, sbom.digest))?.repository, 'hello2')
      assert.deepEqual(await referrersOf(hello, image.digest), [])
      assert.equal((await hello2.fetch(`/v2/${hello2.name}/manifests/${sbom.digest}`)).status, 200)

      const fromHello2 = await hello2.fetch(`/v2/${hello2.name}/manifests/${sbom.digest}`, {
        method: 'DELETE',
      })
      assert.equal(fromHello2.status, 202)
      assert.equal(await manifestRecord(stack, sbom.digest), null)
    })

    it('lists in the catalog, by handle, only repositories that hold a manifest', async () => {
      const names = await catalog(stack)
      assert.ok(names.includes('alice.test/hello'), JSON.stringify(names))
      assert.ok(!names.includes('alice.test/hello2'), JSON.stringify(names))
      assert.ok(!names.some((n) => n.startsWith('did-')), JSON.stringify(names))
    })

    it('is rebuilt from the records by an AppView that never saw the pushes', async () => {
      const other = await stack.anotherAppView()
      const reader = new Pusher(other, stack.alice, hello.name)
      for (const reference of ['latest', image.digest]) {
        const response = await reader.fetch(`/v2/${hello.name}/manifests/${reference}`)
        assert.equal(response.status, 200, reference)
        assert.ok(Buffer.from(await response.arrayBuffer()).equals(image.bytes))
      }
      const layer = await reader.fetch(`/v2/${hello.name}/blobs/${blobsOf(image)[1]}`)
      assert.equal(layer.status, 200)
      const elsewhere = new Pusher(other, stack.alice, never.name)
      const unknown = await elsewhere.fetch(`/v2/${never.name}/manifests/${image.digest}`)
      assert.equal(unknown.status, 404)
    })
  })

  describe('tags of one repository', () => {
    it('lists only its own tags, across PDS pages, and pages from `last` on', async () => {
      const named = (repository: string) =>
        new Pusher(stack, stack.alice, stack.nameOf(stack.alice, repository))
      const pfx = named('pfx')
      const image = await pfx.image('tagged')
      // Neighbours whose tag keys sort right before and after pfx's (`pfx-a:`, `pfx2:`,
      // `pfx~sub:`).
      for (const other of ['pfx-a', 'pfx2', 'pfx/sub']) {
        const pusher = named(other)
        await mount(pusher, pfx, blobsOf(image))
        assert.equal((await pusher.putManifest('other', image.bytes)).status, 201)
      }
      const tags = Array.from({ length: 105 }, (_, i) => `t${String(i).padStart(3, '0')}`)
      for (const tag of tags) assert.equal((await pfx.putManifest(tag, image.bytes)).status, 201)

      assert.deepEqual(await tagsOf(pfx), tags)
      const page = await pfx.fetch(`/v2/${pfx.name}/tags/list?n=3&last=t099`)
      assert.deepEqual(((await page.json()) as { tags: string[] }).tags, ['t100', 't101', 't102'])
      assert.match(page.headers.get('link') ?? '', /last=t102/)
      const end = await pfx.fetch(`/v2/${pfx.name}/tags/list?n=10&last=t100`)
      assert.deepEqual(((await end.json()) as { tags: string[] }).tags, tags.slice(101))
      assert.equal(end.headers.get('link'), null)
    })
  })

  describe('manifests up to the configured size', () => {
    it('round-trips a 3.9 MB manifest by digest and by tag, recording what fits', async () => {
      const pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'big'))
      const annotations: Record<string, string> = {}
      for (let i = 0; i < 390; i++) annotations[`org.example.note.${i}`] = 'x'.repeat(10_000)
      const image = await pusher.image('big', { annotations })
      assert.ok(image.bytes.length > 3_900_000 && image.bytes.length < 4 * 1024 * 1024)
      assert.equal((await pusher.putManifest(image.digest, image.bytes)).status, 201)
      assert.equal((await pusher.putManifest('huge', image.bytes)).status, 201)
      for (const reference of [image.digest, 'huge']) {
        const response = await pusher.fetch(`/v2/${pusher.name}/manifests/${reference}`)
        assert.equal(response.status, 200)
        assert.equal(response.headers.get('docker-content-digest'), image.digest)
        assert.ok(Buffer.from(await response.arrayBuffer()).equals(image.bytes))
      }
      const record = await manifestRecord(stack, image.digest)
      assert.ok(record)
      assert.deepEqual(record.omittedAnnotations, ['annotations'])
      assert.equal(record.annotations, undefined)
      validateRecordJson(NSID.manifest, record)
    })

    it('answers 413 with an OCI error for a manifest over the limit', async () => {
      const pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'big'))
      const image = await pusher.image('too big', {
        annotations: { 'org.example.padding': 'x'.repeat(5 * 1024 * 1024) },
      })
      const response = await pusher.putManifest('too-big', image.bytes)
      assert.equal(response.status, 413)
      assert.equal(await errorCode(response), 'MANIFEST_INVALID')
      assert.equal((await pusher.fetch(`/v2/${pusher.name}/manifests/too-big`)).status, 404)
    })
  })

  describe('sha512 all the way', () => {
    it('pushes and pulls blobs, an image and an index by sha512 digests and tags', async () => {
      const pusher = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'sha512'))
      const blob512 = async (bytes: string) => {
        const digest = sha512(bytes)
        const response = await pusher.fetch(`/v2/${pusher.name}/blobs/uploads/?digest=${digest}`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream' },
          body: bytes,
        })
        assert.equal(response.status, 201, await response.text())
        return { digest, size: Buffer.byteLength(bytes) }
      }
      const config = await blob512(JSON.stringify({ architecture: 'amd64', os: 'linux' }))
      const layer = await blob512('a sha512 layer')
      const manifestBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
        }),
      )
      const manifestDigest = sha512(manifestBytes)
      const put = await pusher.putManifest(manifestDigest, manifestBytes)
      assert.equal(put.status, 201, await put.clone().text())
      assert.equal(put.headers.get('docker-content-digest'), manifestDigest)
      assert.equal((await pusher.putManifest('v512', manifestBytes)).status, 201)

      const indexBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_INDEX,
          manifests: [
            {
              mediaType: OCI_MANIFEST,
              digest: manifestDigest,
              size: manifestBytes.length,
              platform: { architecture: 'amd64', os: 'linux' },
            },
          ],
        }),
      )
      const indexDigest = sha512(indexBytes)
      assert.equal((await pusher.putManifest(indexDigest, indexBytes, OCI_INDEX)).status, 201)
      assert.equal((await pusher.putManifest('multi', indexBytes, OCI_INDEX)).status, 201)

      for (const [reference, bytes, digest] of [
        [manifestDigest, manifestBytes, manifestDigest],
        ['v512', manifestBytes, manifestDigest],
        [indexDigest, indexBytes, indexDigest],
        ['multi', indexBytes, indexDigest],
      ] as const) {
        const head = await pusher.fetch(`/v2/${pusher.name}/manifests/${reference}`, {
          method: 'HEAD',
        })
        assert.equal(head.status, 200, reference)
        assert.equal(head.headers.get('docker-content-digest'), digest)
        const get = await pusher.fetch(`/v2/${pusher.name}/manifests/${reference}`)
        assert.equal(get.status, 200, reference)
        assert.equal(get.headers.get('docker-content-digest'), digest)
        assert.ok(Buffer.from(await get.arrayBuffer()).equals(bytes))
      }
      const layerBack = await pusher.fetch(`/v2/${pusher.name}/blobs/${layer.digest}`)
      assert.equal(layerBack.status, 200)
      assert.equal(await layerBack.text(), 'a sha512 layer')

      // Records: digest fields hold the sha256 of the same bytes, sha512Digest the client's.
      const record = await manifestRecord(stack, sha256(manifestBytes))
      assert.ok(record)
      validateRecordJson(NSID.manifest, record)
      assert.equal(record.digest, sha256(manifestBytes))
      assert.equal(record.sha512Digest, manifestDigest)
      const layers = record.layers as { digest: string; sha512Digest: string }[]
      assert.equal(layers[0]!.digest, sha256('a sha512 layer'))
      assert.equal(layers[0]!.sha512Digest, layer.digest)
      const index = await manifestRecord(stack, sha256(indexBytes))
      assert.ok(index)
      validateRecordJson(NSID.manifest, index)
      const children = index.manifests as { digest: string; sha512Digest: string }[]
      assert.equal(children[0]!.digest, sha256(manifestBytes))
      assert.equal(children[0]!.sha512Digest, manifestDigest)

      // A referrer of the sha512 manifest, listed under its sha512 digest.
      const signature = await pusher.image('signature', {
        artifactType: 'application/vnd.example.signature',
        subject: { mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifestBytes.length },
      })
      assert.equal((await pusher.putManifest(signature.digest, signature.bytes)).status, 201)
      assert.deepEqual(await referrersOf(pusher, manifestDigest), [signature.digest])
    })
  })
})

describe('identities the registry cannot reach', () => {
  let stack: RegistryStack
  let didWeb: DidWebServer

  before(async () => {
    stack = await startRegistryStack()
    didWeb = await startDidWebServer()
  })
  after(async () => {
    await didWeb?.close()
    await stack?.close()
  })

  it('answers NAME_UNKNOWN for identities on private addresses in production mode', async () => {
    const production = await stack.anotherAppView({ mode: 'production' })
    for (const name of ['alice.test/app', `${didWeb.did}/app`]) {
      const token = await production.token(null, [`repository:${name}:pull`])
      const path = `/v2/${name.replaceAll('%', '%25')}/manifests/latest`
      const response = await fetch(`${production.url}${path}`, {
        headers: { authorization: `Bearer ${token}` },
      })
      assert.equal(response.status, 404, name)
      assert.equal(await errorCode(response), 'NAME_UNKNOWN')
    }
    assert.equal(production.logs.records().filter((l) => Number(l.level) >= 50).length, 0)
  })

  it('answers 503 UNAVAILABLE when the PDS of an identity is down', async () => {
    const key = await Secp256k1Keypair.create()
    didWeb.setDocument({
      '@context': ['https://www.w3.org/ns/did/v1'],
      id: didWeb.did,
      alsoKnownAs: [],
      verificationMethod: [
        {
          id: `${didWeb.did}#atproto`,
          type: 'Multikey',
          controller: didWeb.did,
          publicKeyMultibase: key.did().replace('did:key:', ''),
        },
      ],
      // Port 9 (discard): nothing listens there.
      service: [
        {
          id: '#atproto_pds',
          type: 'AtprotoPersonalDataServer',
          serviceEndpoint: 'http://localhost:9',
        },
      ],
    })
    const name = `${didWeb.did}/app`
    const token = await stack.token(null, [`repository:${name}:pull`])
    // The name's `%` (the port's `:` in a did:web) is written percent-encoded in the path.
    const response = await fetch(
      `${stack.url}/v2/${name.replaceAll('%', '%25')}/manifests/latest`,
      {
        headers: { authorization: `Bearer ${token}` },
      },
    )
    assert.equal(response.status, 503)
    assert.equal(await errorCode(response), 'UNAVAILABLE')
  })
})
