import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AtpAgent } from '@atproto/api'
import { TID } from '@atproto/common'
import { readCarWithRoot, verifyRecords, verifyRepo } from '@atproto/repo'
import { xrpcErrorHandler, xrpcNotFoundHandler } from '../src/xrpc/error.ts'
import { CREW, crewRecord, type EmbeddedPds, startEmbeddedPds } from './pds-harness.ts'

const LAYER = 'io.atcr.hold.layer'

function layer(i: number) {
  return {
    $type: LAYER,
    digest: `sha256:${i.toString(16).padStart(64, '0')}`,
    size: 1000 + i,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    manifest: 'at://did:plc:alice/io.atcr.manifest/abc',
    userDid: 'did:plc:alice',
    createdAt: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString(),
  }
}

/** An XRPC URL with its parameters encoded (a did:web DID carries a `%3A`). */
function xrpc(base: string, method: string, params: Record<string, string> = {}) {
  const query = new URLSearchParams(params).toString()
  return `${base}/xrpc/${method}${query ? `?${query}` : ''}`
}

async function getCar(url: string) {
  const res = await fetch(url)
  assert.equal(res.status, 200, await res.clone().text())
  assert.equal(res.headers.get('content-type'), 'application/vnd.ipld.car')
  return new Uint8Array(await res.arrayBuffer())
}

async function getJson(url: string) {
  const res = await fetch(url)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('hold PDS XRPC reads', () => {
  let hold: EmbeddedPds
  let agent: AtpAgent
  const rkeys: string[] = []
  const ociCalls: string[] = []

  before(async () => {
    hold = await startEmbeddedPds({
      routes: {
        version: '9.9.9',
        ociBlob: async ({ digest, reply }) => {
          ociCalls.push(digest)
          return reply.redirect(`https://s3.example.com/${digest}`, 307)
        },
      },
      setup: (app) => {
        app.setNotFoundHandler(xrpcNotFoundHandler)
        app.register(async (scope) => {
          scope.setErrorHandler(xrpcErrorHandler)
          scope.get('/xrpc/io.atcr.test.crash', async () => {
            throw new Error('secret database path /var/lib/hold')
          })
        })
      },
    })
    for (let i = 0; i < 7; i++) {
      const rkey = TID.nextStr()
      rkeys.push(rkey)
      await hold.repo.writer.createRecord(LAYER, rkey, layer(i))
    }
    await hold.repo.writer.createRecord(CREW, 'alice', crewRecord('did:plc:alice'))
    agent = new AtpAgent({ service: hold.url })
  })

  after(async () => {
    await hold?.close()
  })

  it('describes the repo to a stock atproto client', async () => {
    const { data } = await agent.com.atproto.repo.describeRepo({ repo: hold.did })
    assert.equal(data.did, hold.did)
    assert.equal(data.handle, hold.handle)
    assert.equal(data.handleIsCorrect, true)
    assert.deepEqual(data.collections, [CREW, LAYER])
    assert.equal((data.didDoc as { id: string }).id, hold.did)
    // The handle names the repo too.
    const byHandle = await agent.com.atproto.repo.describeRepo({ repo: hold.handle })
    assert.equal(byHandle.data.did, hold.did)
  })

  it('lists records newest first, pages with a cursor, and reverses', async () => {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const { data } = await agent.com.atproto.repo.listRecords({
        repo: hold.did,
        collection: LAYER,
        limit: 3,
        cursor,
      })
      pages++
      seen.push(...data.records.map((r) => r.uri.split('/').pop() ?? ''))
      cursor = data.cursor
    } while (cursor)
    assert.deepEqual(seen, [...rkeys].reverse())
    assert.ok(pages >= 3)

    const reversed = await agent.com.atproto.repo.listRecords({
      repo: hold.did,
      collection: LAYER,
      limit: 4,
      reverse: true,
    })
    assert.deepEqual(
      reversed.data.records.map((r) => r.uri.split('/').pop()),
      rkeys.slice(0, 4),
    )
    const next = await agent.com.atproto.repo.listRecords({
      repo: hold.did,
      collection: LAYER,
      limit: 4,
      reverse: true,
      cursor: reversed.data.cursor,
    })
    assert.deepEqual(
      next.data.records.map((r) => r.uri.split('/').pop()),
      rkeys.slice(4),
    )
    const first = reversed.data.records[0]
    assert.equal((first?.value as { size?: number } | undefined)?.size, 1000)
  })

  it('gets a record, and answers RecordNotFound for a missing one', async () => {
    const rkey = rkeys[2] ?? ''
    const { data } = await agent.com.atproto.repo.getRecord({
      repo: hold.did,
      collection: LAYER,
      rkey,
    })
    assert.equal(data.uri, `at://${hold.did}/${LAYER}/${rkey}`)
    assert.deepEqual(data.value, layer(2))
    const stored = await hold.repo.reader.getRecord(LAYER, rkey)
    assert.equal(data.cid, stored?.cid)

    await assert.rejects(
      agent.com.atproto.repo.getRecord({ repo: hold.did, collection: LAYER, rkey: 'missing' }),
      (err: { status?: number; error?: string }) =>
        err.status === 400 && err.error === 'RecordNotFound',
    )
    const res = await getJson(
      xrpc(hold.url, 'com.atproto.repo.getRecord', {
        repo: hold.did,
        collection: LAYER,
        rkey: 'missing',
      }),
    )
    assert.equal(res.status, 400)
    assert.equal(res.body.error, 'RecordNotFound')
  })

  it('refuses bad parameters with 400 InvalidRequest', async () => {
    const base = xrpc(hold.url, 'com.atproto.repo.listRecords', {
      repo: hold.did,
      collection: LAYER,
    })
    for (const bad of ['&limit=0', '&limit=101', '&limit=abc', '&reverse=maybe']) {
      const res = await getJson(base + bad)
      assert.equal(res.status, 400, bad)
      assert.equal(res.body.error, 'InvalidRequest', bad)
      assert.equal(typeof res.body.message, 'string')
    }
    const noCollection = await getJson(
      xrpc(hold.url, 'com.atproto.repo.listRecords', { repo: hold.did, collection: 'not-an-nsid' }),
    )
    assert.equal(noCollection.status, 400)
    assert.equal(noCollection.body.error, 'InvalidRequest')
    const badSince = await getJson(
      xrpc(hold.url, 'com.atproto.sync.getRepo', { did: hold.did, since: 'x' }),
    )
    assert.equal(badSince.body.error, 'InvalidRequest')
  })

  it('answers RepoNotFound for another repo', async () => {
    for (const path of [
      `com.atproto.repo.describeRepo?repo=did:plc:someoneelse`,
      `com.atproto.repo.listRecords?repo=did:plc:someoneelse&collection=${LAYER}`,
      'com.atproto.sync.getRepo?did=did:plc:someoneelse',
      'com.atproto.sync.getLatestCommit?did=did:plc:someoneelse',
    ]) {
      const res = await getJson(`${hold.url}/xrpc/${path}`)
      assert.equal(res.status, 400, path)
      assert.equal(res.body.error, 'RepoNotFound', path)
    }
  })

  it('exports a CAR that verifies against the signing key, and only newer blocks with since', async () => {
    const full = await getCar(xrpc(hold.url, 'com.atproto.sync.getRepo', { did: hold.did }))
    const { root, blocks } = await readCarWithRoot(full)
    const verified = await verifyRepo(blocks, root, hold.did, hold.keypair.did())
    assert.equal(verified.creates.length, 8)
    const head = await agent.com.atproto.sync.getLatestCommit({ did: hold.did })
    assert.equal(root.toString(), head.data.cid)
    assert.equal(verified.commit.rev, head.data.rev)

    const since = head.data.rev
    const newRkey = TID.nextStr()
    await hold.repo.writer.createRecord(LAYER, newRkey, layer(99))
    const diff = await getCar(xrpc(hold.url, 'com.atproto.sync.getRepo', { did: hold.did, since }))
    const partial = await readCarWithRoot(diff)
    assert.ok(partial.blocks.size < blocks.size, `${partial.blocks.size} < ${blocks.size}`)
    assert.ok(partial.blocks.size >= 2, 'the new commit and record at least')
    const newHead = await hold.repo.reader.getHead()
    assert.equal(partial.root.toString(), newHead?.cid)
    const record = await hold.repo.reader.getRecord(LAYER, newRkey)
    assert.ok(
      partial.blocks.cids().some((c) => c.toString() === record?.cid),
      'the new record',
    )
  })

  it('proves a record (and the absence of another) with sync.getRecord', async () => {
    const rkey = rkeys[0] ?? ''
    const car = await getCar(
      xrpc(hold.url, 'com.atproto.sync.getRecord', { did: hold.did, collection: LAYER, rkey }),
    )
    const claims = await verifyRecords(car, hold.did, hold.keypair.did())
    assert.equal(claims.length, 1)
    assert.deepEqual(claims[0]?.record, layer(0))

    const absent = await getCar(
      xrpc(hold.url, 'com.atproto.sync.getRecord', {
        did: hold.did,
        collection: LAYER,
        rkey: 'nothere',
      }),
    )
    const none = await verifyRecords(absent, hold.did, hold.keypair.did())
    assert.equal(none.find((c) => c.rkey === 'nothere')?.record ?? null, null)
  })

  it('answers the sync and server descriptions', async () => {
    const head = await hold.repo.reader.getHead()
    const status = await agent.com.atproto.sync.getRepoStatus({ did: hold.did })
    assert.deepEqual(status.data, { did: hold.did, active: true, rev: head?.rev })
    const repos = await agent.com.atproto.sync.listRepos({})
    assert.deepEqual(repos.data.repos, [
      { did: hold.did, head: head?.cid, rev: head?.rev, active: true },
    ])
    const server = await agent.com.atproto.server.describeServer()
    assert.equal(server.data.did, hold.did)
    const resolved = await agent.com.atproto.identity.resolveHandle({ handle: 'HOLD.test' })
    assert.equal(resolved.data.did, hold.did)
    await assert.rejects(
      agent.com.atproto.identity.resolveHandle({ handle: 'other.test' }),
      (err: { error?: string }) => err.error === 'HandleNotFound',
    )
    assert.deepEqual((await getJson(xrpc(hold.url, '_health'))).body, { version: '9.9.9' })
  })

  it('serves ordinary blobs by CID and hands OCI digests to the storage hook', async () => {
    const bytes = new TextEncoder().encode('an avatar, honestly')
    const ref = await hold.repo.blobs.put(bytes, 'image/png')
    const res = await fetch(
      xrpc(hold.url, 'com.atproto.sync.getBlob', { did: hold.did, cid: ref.ref.$link }),
    )
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'image/png')
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes)
    const head = await fetch(
      xrpc(hold.url, 'com.atproto.sync.getBlob', { did: hold.did, cid: ref.ref.$link }),
      { method: 'HEAD' },
    )
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('content-length'), String(bytes.byteLength))

    // A CID that cannot name a blob (a DAG-CBOR block's).
    const repoHead = await hold.repo.reader.getHead()
    const missing = await getJson(
      xrpc(hold.url, 'com.atproto.sync.getBlob', { did: hold.did, cid: String(repoHead?.cid) }),
    )
    assert.equal(missing.status, 400)
    assert.equal(missing.body.error, 'BlobNotFound')

    // An OCI digest, and a raw sha256 CID not in the blob table: the same OCI blob.
    const digest = `sha256:${'a'.repeat(64)}`
    const rawCid = 'bafkreifkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvi'
    for (const cid of [digest, rawCid]) {
      const oci = await fetch(xrpc(hold.url, 'com.atproto.sync.getBlob', { did: hold.did, cid }), {
        redirect: 'manual',
      })
      assert.equal(oci.status, 307)
      assert.equal(oci.headers.get('location'), `https://s3.example.com/${digest}`)
    }
    assert.deepEqual(ociCalls, [digest, digest])
  })

  it('hides internal errors and names unknown methods', async () => {
    const crash = await getJson(xrpc(hold.url, 'io.atcr.test.crash'))
    assert.equal(crash.status, 500)
    assert.deepEqual(crash.body, { error: 'InternalServerError', message: 'Internal Server Error' })
    const unknown = await getJson(xrpc(hold.url, 'io.atcr.hold.nothing'))
    assert.equal(unknown.status, 501)
    assert.equal(unknown.body.error, 'MethodNotImplemented')
  })
})
