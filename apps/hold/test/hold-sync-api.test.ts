/**
 * com.atproto.sync.listBlobs, sync.getBlocks and getBlob by CID on a real Hold, each
 * compared with the same call to the reference PDS (@atproto/pds) of the test network:
 * the same status, error names and answer shapes.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import type { TestAccount } from '@atcr/testkit'
import { TID } from '@atproto/common'
import { jsonToLex } from '@atproto/lex-json'
import { readCar } from '@atproto/repo'
import type { Kysely } from 'kysely'
import * as recordBlobMigration from '../src/db/migrations/006-record-blob.ts'
import { cidOfDigest } from '../src/pds/storage/blob-cid.ts'
import { LAYER_TYPE, storeBlob } from './hold-data.ts'
import { HoldFixture, type TestHold } from './hold-harness.ts'

let fixture: HoldFixture<['sync-alice.test']>
let hold: TestHold
let alice: TestAccount
let pdsUrl: string

interface Answer {
  status: number
  type: string | null
  body: Record<string, unknown>
}

async function call(base: string, method: string, params: [string, string][]): Promise<Answer> {
  const response = await fetch(`${base}/xrpc/${method}?${new URLSearchParams(params)}`)
  const type = response.headers.get('content-type')
  const body = type?.startsWith('application/json')
    ? ((await response.json()) as Record<string, unknown>)
    : { bytes: new Uint8Array(await response.arrayBuffer()) }
  return { status: response.status, type, body }
}

const onHold = (method: string, params: [string, string][]) => call(hold.url, method, params)
const onPds = (method: string, params: [string, string][]) => call(pdsUrl, method, params)

/** Every page of listBlobs, and the cursors it answered. */
async function allBlobs(base: string, did: string, limit: number, since?: string) {
  const cids: string[] = []
  const cursors: (string | undefined)[] = []
  let cursor: string | undefined
  for (let page = 0; page < 100; page++) {
    const params: [string, string][] = [
      ['did', did],
      ['limit', String(limit)],
    ]
    if (cursor) params.push(['cursor', cursor])
    if (since) params.push(['since', since])
    const answer = await call(base, 'com.atproto.sync.listBlobs', params)
    assert.equal(answer.status, 200, JSON.stringify(answer.body))
    const body = answer.body as { cids: string[]; cursor?: string }
    cids.push(...body.cids)
    cursors.push(body.cursor)
    if (body.cids.length === 0) return { cids, cursors }
    cursor = body.cursor
  }
  throw new Error('listBlobs never ended')
}

const blobUrl = (base: string, did: string, cid: string) =>
  `${base}/xrpc/com.atproto.sync.getBlob?${new URLSearchParams({ did, cid })}`

const sorted = (list: string[]) => [...list].sort()

/** Writes a layer record for a stored blob, as a push leaves it. */
async function layerRecord(digest: string, size: number) {
  await hold.ctx.repo.writer.createRecord(NSID.holdLayer, TID.nextStr(), {
    $type: NSID.holdLayer,
    digest,
    size,
    mediaType: LAYER_TYPE,
    manifest: `at://${alice.did}/io.atcr.manifest/${TID.nextStr()}`,
    userDid: alice.did,
    createdAt: new Date().toISOString(),
  })
}

/** A record naming an atproto blob, on the PDS (uploaded) or the hold (stored). */
async function pdsBlobRecord(bytes: Uint8Array) {
  const { data } = await alice.agent.com.atproto.repo.uploadBlob(bytes, {
    encoding: 'image/png',
  })
  await alice.agent.com.atproto.repo.createRecord({
    repo: alice.did,
    collection: 'app.bsky.feed.post',
    record: {
      $type: 'app.bsky.feed.post',
      text: 'a picture',
      createdAt: new Date().toISOString(),
      embed: {
        $type: 'app.bsky.embed.images',
        images: [{ alt: '', image: data.blob }],
      },
    },
  })
  return data.blob.ref.toString()
}

let layerBytes: Buffer
let layerDigest: string
const holdBlobs: string[] = []
const pdsBlobs: string[] = []
let holdRevBefore: string
let pdsRevBefore: string

before(async () => {
  fixture = await HoldFixture.start({ accounts: ['sync-alice.test'] as const })
  ;[alice] = fixture.accounts
  pdsUrl = fixture.net.pds.url
  hold = await fixture.startHold({
    public: true,
    overrides: { storage: { presigned_redirects: false } },
  })

  // Two blobs on each side, then a rev, then one more: for paging and `since`.
  layerBytes = randomBytes(64 * 1024)
  layerDigest = await storeBlob(hold.ctx, layerBytes)
  await layerRecord(layerDigest, layerBytes.length)
  holdBlobs.push(String(cidOfDigest(layerDigest)))
  const avatar = await hold.ctx.repo.blobs.put(randomBytes(300), 'image/png')
  await hold.ctx.repo.writer.createRecord('app.bsky.feed.post', TID.nextStr(), {
    $type: 'app.bsky.feed.post',
    text: 'a picture',
    createdAt: new Date().toISOString(),
    embed: {
      $type: 'app.bsky.embed.images',
      // The store answers the JSON form; a record holds the CID itself.
      images: [{ alt: '', image: jsonToLex({ ...avatar }) }],
    },
  })
  holdBlobs.push(avatar.ref.$link)
  pdsBlobs.push(await pdsBlobRecord(randomBytes(300)), await pdsBlobRecord(randomBytes(400)))

  holdRevBefore = (await hold.ctx.repo.reader.getHead())?.rev ?? ''
  const { data } = await alice.agent.com.atproto.sync.getLatestCommit({ did: alice.did })
  pdsRevBefore = data.rev

  const later = randomBytes(1000)
  const laterDigest = await storeBlob(hold.ctx, later)
  await layerRecord(laterDigest, later.length)
  holdBlobs.push(String(cidOfDigest(laterDigest)))
  pdsBlobs.push(await pdsBlobRecord(randomBytes(500)))
})
after(() => fixture?.close())

describe('com.atproto.sync.listBlobs', () => {
  it('lists every blob once, in CID order, as the reference PDS does', async () => {
    const onHoldAll = await allBlobs(hold.url, hold.did, 500)
    const onPdsAll = await allBlobs(pdsUrl, alice.did, 500)
    assert.deepEqual(onHoldAll.cids, sorted(holdBlobs))
    assert.deepEqual(onPdsAll.cids, sorted(pdsBlobs))
    // A full page carries its last CID as the cursor; the empty page after it has none.
    assert.deepEqual(onHoldAll.cursors, [onHoldAll.cids.at(-1), undefined])
    assert.deepEqual(onPdsAll.cursors, [onPdsAll.cids.at(-1), undefined])
  })

  it('pages with the cursor', async () => {
    const onHoldPaged = await allBlobs(hold.url, hold.did, 1)
    const onPdsPaged = await allBlobs(pdsUrl, alice.did, 1)
    assert.deepEqual(onHoldPaged.cids, sorted(holdBlobs))
    assert.deepEqual(onPdsPaged.cids, sorted(pdsBlobs))
    assert.deepEqual(onHoldPaged.cursors, [...onHoldPaged.cids, undefined])
    assert.deepEqual(onPdsPaged.cursors, [...onPdsPaged.cids, undefined])
  })

  it('with `since`, lists the blobs of records written after that rev', async () => {
    assert.deepEqual((await allBlobs(hold.url, hold.did, 10, holdRevBefore)).cids, [holdBlobs[2]])
    assert.deepEqual((await allBlobs(pdsUrl, alice.did, 10, pdsRevBefore)).cids, [pdsBlobs[2]])
  })

  it('fills the index from the records of a hold that had none (migration 006)', async () => {
    const db = hold.ctx.db.db
    const listed = await allBlobs(hold.url, hold.did, 500)
    await db.schema.dropTable('record_blob').execute()
    // Migrations take the database untyped, as the migrator hands it to them.
    await recordBlobMigration.up(db as unknown as Kysely<unknown>)
    assert.deepEqual((await allBlobs(hold.url, hold.did, 500)).cids, listed.cids)
  })

  it('answers errors as the reference PDS does', async () => {
    const cases: [string, [string, string][], [string, string][]][] = [
      ['another repo', [['did', 'did:plc:nobodyhere']], [['did', 'did:plc:nobodyhere']]],
      ['no did', [], []],
      [
        'a limit out of range',
        [
          ['did', hold.did],
          ['limit', '1001'],
        ],
        [
          ['did', alice.did],
          ['limit', '1001'],
        ],
      ],
    ]
    for (const [what, holdParams, pdsParams] of cases) {
      const fromHold = await onHold('com.atproto.sync.listBlobs', holdParams)
      const fromPds = await onPds('com.atproto.sync.listBlobs', pdsParams)
      assert.equal(fromHold.status, fromPds.status, what)
      assert.equal(fromHold.body.error, fromPds.body.error, what)
      assert.equal(typeof fromHold.body.message, 'string', what)
    }
  })
})

describe('com.atproto.sync.getBlocks', () => {
  it('answers a root-less CAR of the named blocks, as the reference PDS does', async () => {
    const holdHead = await hold.ctx.repo.reader.getHead()
    const { data: pdsHead } = await alice.agent.com.atproto.sync.getLatestCommit({
      did: alice.did,
    })
    assert.ok(holdHead)
    const fromHold = await onHold('com.atproto.sync.getBlocks', [
      ['did', hold.did],
      ['cids', holdHead.cid],
    ])
    const fromPds = await onPds('com.atproto.sync.getBlocks', [
      ['did', alice.did],
      ['cids', pdsHead.cid],
    ])
    for (const [answer, head] of [
      [fromHold, holdHead.cid],
      [fromPds, pdsHead.cid],
    ] as const) {
      assert.equal(answer.status, 200)
      assert.equal(answer.type, 'application/vnd.ipld.car')
      const car = await readCar(answer.body.bytes as Uint8Array)
      assert.deepEqual(car.roots, [])
      assert.deepEqual(
        car.blocks.entries().map((e) => e.cid.toString()),
        [head],
      )
    }
  })

  it('answers several blocks, and refuses the request if any is missing, naming it', async () => {
    const snapshot = hold.ctx.repo.reader.exportCar()
    const chunks: Uint8Array[] = []
    for await (const chunk of snapshot) chunks.push(chunk)
    const all = (await readCar(Buffer.concat(chunks))).blocks.entries().map((e) => e.cid.toString())
    const some = all.slice(0, 5)
    const many = await onHold('com.atproto.sync.getBlocks', [
      ['did', hold.did],
      ...some.map((cid): [string, string] => ['cids', cid]),
    ])
    assert.equal(many.status, 200)
    const got = await readCar(many.body.bytes as Uint8Array)
    assert.deepEqual(sorted(got.blocks.entries().map((e) => e.cid.toString())), sorted(some))

    // A well-formed CID that is in neither store (a blob's, not a block's).
    const absent = holdBlobs[0] as string
    const fromHold = await onHold('com.atproto.sync.getBlocks', [
      ['did', hold.did],
      ['cids', some[0] as string],
      ['cids', absent],
    ])
    const fromPds = await onPds('com.atproto.sync.getBlocks', [
      ['did', alice.did],
      ['cids', absent],
    ])
    assert.equal(fromHold.status, fromPds.status)
    assert.equal(fromHold.body.error, fromPds.body.error)
    assert.equal(fromHold.body.message, `Could not find cids: ${absent}`)
    assert.equal(fromPds.body.message, `Could not find cids: ${absent}`)
  })

  it('answers bad requests as the reference PDS does', async () => {
    const cases: [string, [string, string][], [string, string][]][] = [
      [
        'another repo',
        [
          ['did', 'did:plc:nobodyhere'],
          ['cids', holdBlobs[0] as string],
        ],
        [
          ['did', 'did:plc:nobodyhere'],
          ['cids', holdBlobs[0] as string],
        ],
      ],
      ['no cids', [['did', hold.did]], [['did', alice.did]]],
      [
        'a malformed cid',
        [
          ['did', hold.did],
          ['cids', 'not-a-cid'],
        ],
        [
          ['did', alice.did],
          ['cids', 'not-a-cid'],
        ],
      ],
    ]
    for (const [what, holdParams, pdsParams] of cases) {
      const fromHold = await onHold('com.atproto.sync.getBlocks', holdParams)
      const fromPds = await onPds('com.atproto.sync.getBlocks', pdsParams)
      assert.equal(fromHold.status, fromPds.status, what)
      assert.equal(fromHold.body.error, fromPds.body.error, what)
    }
  })
})

describe('com.atproto.sync.getBlob by CID', () => {
  it('serves an OCI blob by its raw CID, the one listBlobs names', async () => {
    const cid = String(cidOfDigest(layerDigest))
    const answer = await onHold('com.atproto.sync.getBlob', [
      ['did', hold.did],
      ['cid', cid],
    ])
    assert.equal(answer.status, 200)
    assert.ok(Buffer.from(answer.body.bytes as Uint8Array).equals(layerBytes))
  })

  it('serves an atproto blob by its CID with the headers the reference PDS sends', async () => {
    const [holdAnswer, pdsAnswer] = await Promise.all([
      fetch(blobUrl(hold.url, hold.did, holdBlobs[1] as string)),
      fetch(blobUrl(pdsUrl, alice.did, pdsBlobs[0] as string)),
    ])
    assert.equal(holdAnswer.status, pdsAnswer.status)
    for (const header of [
      'content-type',
      'x-content-type-options',
      'content-security-policy',
    ] as const) {
      assert.equal(holdAnswer.headers.get(header), pdsAnswer.headers.get(header), header)
    }
    assert.equal((await holdAnswer.arrayBuffer()).byteLength, 300)
    assert.equal((await pdsAnswer.arrayBuffer()).byteLength, 300)
  })

  it('answers a CID it does not store with an error, as the reference PDS does', async () => {
    const unknown = String(cidOfDigest(`sha256:${'ab'.repeat(32)}`))
    const fromHold = await onHold('com.atproto.sync.getBlob', [
      ['did', hold.did],
      ['cid', unknown],
    ])
    const fromPds = await onPds('com.atproto.sync.getBlob', [
      ['did', alice.did],
      ['cid', unknown],
    ])
    assert.ok(fromHold.status >= 400 && fromHold.status < 500, String(fromHold.status))
    assert.ok(fromPds.status >= 400 && fromPds.status < 500, String(fromPds.status))
    assert.equal(typeof fromHold.body.error, 'string')
    assert.match(String(fromHold.body.message), /Blob not found/)
    assert.match(String(fromPds.body.message), /Blob not found/)
  })
})
