import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startNetwork, type TestAccount, type TestNetwork } from '@atcr/testkit'
import {
  BadSignatureError,
  readRepoCar,
  type VerifiedRepoCar,
  WrongDidError,
} from '../src/car/index.ts'

/** The account's repo signing key, as its PLC document publishes it. */
async function signingKeyOf(net: TestNetwork, did: string): Promise<string> {
  const res = await fetch(`${net.plc.url}/${did}/data`)
  assert.equal(res.status, 200)
  const data = (await res.json()) as { verificationMethods: { atproto: string } }
  return data.verificationMethods.atproto
}

async function getRepo(net: TestNetwork, did: string): Promise<Response> {
  const res = await fetch(`${net.pds.url}/xrpc/com.atproto.sync.getRepo?did=${did}`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'application/vnd.ipld.car')
  return res
}

describe('CAR import of a real PDS repo', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  const written = new Map<string, { cid: string; value: Record<string, unknown> }>()

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    const put = async (collection: string, rkey: string, record: Record<string, unknown>) => {
      const res = await alice.agent.com.atproto.repo.putRecord({
        repo: alice.did,
        collection,
        rkey,
        record,
      })
      written.set(`${collection}/${rkey}`, { cid: res.data.cid, value: record })
    }
    await put('io.atcr.manifest', 'sha256-0123abcd', {
      $type: 'io.atcr.manifest',
      repository: 'alpine',
      digest: 'sha256:0123abcd',
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      layers: [{ digest: 'sha256:feed', size: 3145728 }],
      createdAt: '2025-01-01T00:00:00.000Z',
    })
    await put('io.atcr.tag', 'alpine-latest', {
      $type: 'io.atcr.tag',
      repository: 'alpine',
      tag: 'latest',
      manifestDigest: 'sha256:0123abcd',
      createdAt: '2025-01-01T00:00:01.000Z',
    })
    await put('io.atcr.tag', 'alpine-old', { $type: 'io.atcr.tag', tag: 'old' })
    await put('io.atcr.sailor.profile', 'self', { $type: 'io.atcr.sailor.profile', n: 1 })
    const created = await alice.agent.com.atproto.repo.createRecord({
      repo: alice.did,
      collection: 'app.bsky.feed.post',
      record: { $type: 'app.bsky.feed.post', text: 'hello', createdAt: new Date().toISOString() },
    })
    const { collection, rkey } = parseUri(created.data.uri)
    const post = await alice.agent.com.atproto.repo.getRecord({ repo: alice.did, collection, rkey })
    written.set(`${collection}/${rkey}`, {
      cid: created.data.cid,
      value: post.data.value as Record<string, unknown>,
    })
    // A deleted record must not come back.
    await alice.agent.com.atproto.repo.deleteRecord({
      repo: alice.did,
      collection: 'io.atcr.tag',
      rkey: 'alpine-old',
    })
    written.delete('io.atcr.tag/alpine-old')
  })
  after(() => net?.close())

  function parseUri(uri: string) {
    const [, , , collection, rkey] = uri.split('/')
    return { collection: collection!, rkey: rkey! }
  }

  function asWritten(read: VerifiedRepoCar) {
    return new Map(
      read.records.map((r) => [
        `${r.collection}/${r.rkey}`,
        { cid: r.cid.toString(), value: r.value as Record<string, unknown> },
      ]),
    )
  }

  it('streams getRepo, verifies it against the PLC key, and yields exactly the records', async () => {
    const signingKey = await signingKeyOf(net, alice.did)
    assert.match(signingKey, /^did:key:z/)
    const res = await getRepo(net, alice.did)
    assert.ok(res.body)
    const read = await readRepoCar(res.body, { did: alice.did, signingKey })
    assert.equal(read.did, alice.did)
    assert.equal(read.signatureVerified, true)
    assert.deepEqual(asWritten(read), written)

    const latest = await alice.agent.com.atproto.sync.getLatestCommit({ did: alice.did })
    assert.equal(read.commitCid.toString(), latest.data.cid)
    assert.equal(read.rev, latest.data.rev)
  })

  it("rejects alice's repo checked with bob's key, or as bob's repo", async () => {
    const bytes = new Uint8Array(await (await getRepo(net, alice.did)).arrayBuffer())
    const bobKey = await signingKeyOf(net, bob.did)
    await assert.rejects(readRepoCar(bytes, { signingKey: bobKey }), BadSignatureError)
    await assert.rejects(readRepoCar(bytes, { did: bob.did }), WrongDidError)
  })
})
