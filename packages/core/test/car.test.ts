import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { before, describe, it } from 'node:test'
import { TID } from '@atproto/common'
import { Secp256k1Keypair } from '@atproto/crypto'
import type { Cid, LexMap } from '@atproto/lex-data'
import {
  BlockMap,
  blocksToCarFile,
  getFullRepo,
  MemoryBlockstore,
  type RecordCreateOp,
  type RecordWriteOp,
  Repo,
  readCarWithRoot,
  signCommit,
  verifyRepo,
  WriteOpAction,
} from '@atproto/repo'
import type { NsidString } from '@atproto/syntax'
import {
  BadSignatureError,
  BlockHashMismatchError,
  CarError,
  CarMalformedError,
  CarMissingBlockError,
  CarTooLargeError,
  CarTruncatedError,
  EmptyRepoError,
  exportRepoCar,
  InvalidMstError,
  mstKeyLayer,
  readCarStream,
  readRepoCar,
  WrongDidError,
  writeCarTo,
} from '../src/car/index.ts'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks)
}

async function* inChunks(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

function create(collection: NsidString, rkey: string, record: LexMap): RecordCreateOp {
  return { action: WriteOpAction.Create, collection, rkey, record }
}

/** What readRepoCar should return for a repo, from the library's own view of it. */
async function expectedRecords(repo: Repo) {
  const out: { collection: string; rkey: string; cid: string; value: LexMap }[] = []
  for await (const r of repo.walkRecords()) {
    out.push({ collection: r.collection, rkey: r.rkey, cid: r.cid.toString(), value: r.record })
  }
  return out
}

function plain(records: { collection: string; rkey: string; cid: Cid; value: LexMap }[]) {
  return records.map((r) => ({ ...r, cid: r.cid.toString() }))
}

async function rejectsWith(promise: Promise<unknown>, type: new (...args: never[]) => CarError) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`)
    return true
  })
}

/** A key (in collection io.atcr.tag) that the MST puts on the given layer. */
function keyOnLayer(layer: number, from = 0): string {
  for (let i = from; ; i++) {
    const key = `io.atcr.tag/k${i}`
    if (mstKeyLayer(key) === layer) return key
  }
}

type Entry = { key: string; value: Cid; subtree?: Cid }

/** Encodes an MST node by hand, so tests can write broken trees. */
async function addNode(
  blocks: BlockMap,
  entries: Entry[],
  left: Cid | null = null,
  compress = true,
) {
  let previous = ''
  return blocks.add({
    l: left,
    e: entries.map((entry) => {
      let p = 0
      while (compress && p < previous.length && previous[p] === entry.key[p]) p++
      previous = entry.key
      return {
        p,
        k: new TextEncoder().encode(entry.key.slice(p)),
        v: entry.value,
        t: entry.subtree ?? null,
      }
    }),
  })
}

/** A signed commit over a hand-built MST, written out as a CAR. */
async function craftCar(
  key: Secp256k1Keypair,
  build: (blocks: BlockMap, record: Cid) => Promise<Cid>,
): Promise<Uint8Array> {
  const blocks = new BlockMap()
  const record = await blocks.add({ $type: 'io.atcr.tag', tag: 'latest' })
  const data = await build(blocks, record)
  const commit = await signCommit(
    { did: DID, version: 3, data, rev: TID.nextStr(), prev: null },
    key,
  )
  return blocksToCarFile(await blocks.add(commit), blocks)
}

describe('CAR export and import (in-memory repos)', () => {
  let key: Secp256k1Keypair
  let storage: MemoryBlockstore
  let repo: Repo
  let car: Buffer

  before(async () => {
    key = await Secp256k1Keypair.create()
    storage = new MemoryBlockstore()
    repo = await Repo.create(storage, DID, key, [
      create('io.atcr.manifest', 'sha256-aaa', {
        $type: 'io.atcr.manifest',
        digest: 'sha256:aaa',
        layers: [{ size: 1024, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
      }),
    ])
    const writes: RecordWriteOp[] = []
    for (let i = 0; i < 300; i++) {
      writes.push(create('io.atcr.tag', `tag-${i}`, { $type: 'io.atcr.tag', tag: `v${i}` }))
    }
    repo = await repo.applyWrites(writes, key)
    // A later commit that updates and deletes, so the storage also holds stale blocks.
    repo = await repo.applyWrites(
      [
        {
          action: WriteOpAction.Update,
          collection: 'io.atcr.tag',
          rkey: 'tag-0',
          record: { $type: 'io.atcr.tag', tag: 'flip-me-please' },
        },
        { action: WriteOpAction.Delete, collection: 'io.atcr.tag', rkey: 'tag-1' },
        create('io.atcr.sailor.profile', 'self', { $type: 'io.atcr.sailor.profile', n: 7 }),
      ],
      key,
    )
    car = await collect(exportRepoCar(storage))
  })

  it('exports a CAR that @atproto/repo reads and verifies, with every record', async () => {
    const { root, blocks } = await readCarWithRoot(car)
    assert.ok(root.equals(repo.cid))
    const verified = await verifyRepo(blocks, root, DID, key.did())
    const paths = verified.creates.map((c) => `${c.collection}/${c.rkey}`).sort()
    const expected = (await expectedRecords(repo)).map((r) => `${r.collection}/${r.rkey}`).sort()
    assert.equal(paths.length, 301)
    assert.deepEqual(paths, expected)
    assert.ok(!paths.includes('io.atcr.tag/tag-1'))
  })

  it('holds the same blocks as the library export, each once', async () => {
    const ours = await readCarWithRoot(car)
    const theirs = await readCarWithRoot(await collect(getFullRepo(storage, repo.cid)))
    assert.equal(ours.blocks.size, theirs.blocks.size)
    assert.ok(ours.blocks.equals(theirs.blocks))
    let frames = 0
    for await (const _ of (await readCarStream(car)).blocks) frames++
    assert.equal(frames, ours.blocks.size)
  })

  it('reads its own export back: did, rev, commit and exactly the records', async () => {
    const read = await readRepoCar(car, { did: DID, signingKey: key.did() })
    assert.equal(read.did, DID)
    assert.equal(read.rev, repo.commit.rev)
    assert.ok(read.commitCid.equals(repo.cid))
    assert.ok(read.dataCid.equals(repo.commit.data))
    assert.equal(read.signatureVerified, true)
    assert.equal(read.size, car.length)
    assert.deepEqual(plain(read.records), await expectedRecords(repo))
    const tag0 = read.records.find((r) => r.rkey === 'tag-0')
    assert.deepEqual(tag0?.value, { $type: 'io.atcr.tag', tag: 'flip-me-please' })
  })

  it('reads the library export and a CAR streamed in small chunks alike', async () => {
    const fromLibrary = await readRepoCar(await collect(getFullRepo(storage, repo.cid)))
    const streamed = await readRepoCar(inChunks(car, 7), { signingKey: key.did() })
    const expected = await expectedRecords(repo)
    assert.deepEqual(plain(fromLibrary.records), expected)
    assert.deepEqual(plain(streamed.records), expected)
    assert.equal(fromLibrary.signatureVerified, false)
  })

  it('accepts every tree @atproto/repo builds, whatever its shape', async () => {
    for (const size of [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]) {
      const store = new MemoryBlockstore()
      const writes = Array.from({ length: size }, (_, i) =>
        create('io.atcr.tag', TID.nextStr(), { $type: 'io.atcr.tag', n: i }),
      )
      let built = await Repo.create(store, DID, key, writes)
      const deletes: RecordWriteOp[] = writes
        .filter((_, i) => i % 3 === 1)
        .map((w) => ({ action: WriteOpAction.Delete, collection: w.collection, rkey: w.rkey }))
      if (deletes.length > 0) built = await built.applyWrites(deletes, key)
      const read = await readRepoCar(await collect(exportRepoCar(store)), { signingKey: key.did() })
      assert.equal(read.records.length, size - deletes.length, `size ${size}`)
    }
  })

  it('exports a given older commit, and an empty repo', async () => {
    const emptyStorage = new MemoryBlockstore()
    const empty = await Repo.create(emptyStorage, DID, key)
    const read = await readRepoCar(await collect(exportRepoCar(emptyStorage, empty.cid)), {
      signingKey: key.did(),
    })
    assert.deepEqual(read.records, [])
    assert.ok(read.commitCid.equals(empty.cid))
    await rejectsWith(collect(exportRepoCar(new MemoryBlockstore())), EmptyRepoError)
  })

  it('writes to a file and reads back from a file stream', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'atcr-car-'))
    try {
      const path = join(dir, 'repo.car')
      const written = await writeCarTo(exportRepoCar(storage), createWriteStream(path))
      assert.equal(written, car.length)
      const read = await readRepoCar(createReadStream(path, { highWaterMark: 1000 }), {
        did: DID,
        signingKey: key.did(),
      })
      assert.equal(read.records.length, 301)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('waits for a slow destination instead of buffering the export', async () => {
    const chunk = new Uint8Array(64 * 1024)
    let produced = 0
    let consumed = 0
    let maxInFlight = 0
    async function* big() {
      for (let i = 0; i < 200; i++) {
        produced += chunk.length
        maxInFlight = Math.max(maxInFlight, produced - consumed)
        yield chunk
      }
    }
    const slow = new Writable({
      highWaterMark: 64 * 1024,
      write(data: Buffer, _encoding, callback) {
        setTimeout(() => {
          consumed += data.length
          callback()
        }, 1)
      },
    })
    const written = await writeCarTo(big(), slow)
    assert.equal(written, 200 * chunk.length)
    assert.equal(consumed, written)
    assert.ok(maxInFlight <= 8 * chunk.length, `${maxInFlight} bytes were in flight`)
  })

  it('writes a CAR to stdout that a reader on the other end verifies', async () => {
    const script = `
      import { Secp256k1Keypair } from '@atproto/crypto'
      import { MemoryBlockstore, Repo, WriteOpAction } from '@atproto/repo'
      import { exportRepoCar, writeCarTo } from ${JSON.stringify(new URL('../src/car/index.ts', import.meta.url).pathname)}
      const key = await Secp256k1Keypair.create()
      const storage = new MemoryBlockstore()
      const writes = Array.from({ length: 50 }, (_, i) => ({
        action: WriteOpAction.Create, collection: 'io.atcr.tag', rkey: 't' + i,
        record: { $type: 'io.atcr.tag', tag: 'v' + i },
      }))
      await Repo.create(storage, '${DID}', key, writes)
      process.stderr.write(key.did())
      await writeCarTo(exportRepoCar(storage), process.stdout, { end: false })
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    const stdout = await collect(child.stdout)
    assert.equal(await exited, 0, stderr)
    const read = await readRepoCar(stdout, { did: DID, signingKey: stderr.trim() })
    assert.equal(read.records.length, 50)
  })

  describe('rejects', () => {
    it('a truncated CAR, wherever it is cut', async () => {
      await rejectsWith(readRepoCar(car.subarray(0, car.length - 10)), CarTruncatedError)
      await rejectsWith(readRepoCar(car.subarray(0, 20)), CarTruncatedError)
      await rejectsWith(readRepoCar(new Uint8Array(0)), CarTruncatedError)
      await rejectsWith(
        readRepoCar(inChunks(car.subarray(0, car.length - 1), 100)),
        CarTruncatedError,
      )
    })

    it('every prefix of a small repo CAR (truncated, or missing blocks at a boundary)', async () => {
      const small = new MemoryBlockstore()
      await Repo.create(small, DID, key, [
        create('io.atcr.tag', 'a', { $type: 'io.atcr.tag', tag: 'a' }),
        create('io.atcr.tag', 'b', { $type: 'io.atcr.tag', tag: 'b' }),
      ])
      const bytes = await collect(exportRepoCar(small))
      for (let cut = 0; cut < bytes.length; cut++) {
        await assert.rejects(readRepoCar(bytes.subarray(0, cut)), (error: unknown) => {
          assert.ok(
            error instanceof CarTruncatedError || error instanceof CarMissingBlockError,
            `cut at ${cut}: ${String(error)}`,
          )
          return true
        })
      }
    })

    it('a CAR with one flipped byte in a record block, naming that block', async () => {
      const at = car.indexOf('flip-me-please')
      assert.ok(at > 0)
      const bad = Buffer.from(car)
      bad[at + 3]! ^= 0x01
      const record = await repo.data.get('io.atcr.tag/tag-0')
      await assert.rejects(readRepoCar(bad), (error: unknown) => {
        assert.ok(error instanceof BlockHashMismatchError, String(error))
        assert.equal(error.code, 'BlockHashMismatch')
        assert.equal(error.cid, record?.toString())
        return true
      })
    })

    it('any single flipped byte, always with a CarError', async () => {
      const small = new MemoryBlockstore()
      await Repo.create(small, DID, key, [
        create('io.atcr.tag', 'a', { $type: 'io.atcr.tag', tag: 'a' }),
      ])
      const bytes = await collect(exportRepoCar(small))
      for (let i = 0; i < bytes.length; i++) {
        const bad = Buffer.from(bytes)
        bad[i]! ^= 0x01
        await assert.rejects(readRepoCar(bad, { did: DID, signingKey: key.did() }), (error) => {
          assert.ok(error instanceof CarError, `flip at ${i}: ${String(error)}`)
          return true
        })
      }
    })

    it('a commit verified against another key, or for another DID', async () => {
      const other = await Secp256k1Keypair.create()
      await rejectsWith(readRepoCar(car, { signingKey: other.did() }), BadSignatureError)
      await assert.rejects(
        readRepoCar(car, { did: 'did:plc:someoneelse234567abcdefg' }),
        (error: unknown) => {
          assert.ok(error instanceof WrongDidError)
          assert.equal(error.actual, DID)
          return true
        },
      )
      await assert.rejects(readRepoCar(car, { signingKey: 'not-a-key' }), TypeError)
    })

    it('a CAR over the size limit, without reading the rest of the stream', async () => {
      await rejectsWith(readRepoCar(car, { maxBytes: car.length - 1 }), CarTooLargeError)
      let pulled = 0
      async function* counted() {
        for await (const chunk of inChunks(car, 1000)) {
          pulled++
          yield chunk
        }
      }
      await rejectsWith(readRepoCar(counted(), { maxBytes: 5000 }), CarTooLargeError)
      assert.equal(pulled, 6)
      const read = await readRepoCar(car, { maxBytes: car.length })
      assert.equal(read.records.length, 301)
    })

    it('bytes that are not a CAR', async () => {
      await rejectsWith(
        readRepoCar(Buffer.from('hello, this is not a CAR file')),
        CarMalformedError,
      )
      const noRoot = await blocksToCarFile(null, new BlockMap())
      await rejectsWith(readRepoCar(noRoot), CarMalformedError)
    })

    it('a repo CAR missing a record block', async () => {
      const { root, blocks } = await readCarWithRoot(car)
      const record = await repo.data.get('io.atcr.sailor.profile/self')
      assert.ok(record)
      blocks.delete(record)
      await assert.rejects(readRepoCar(await blocksToCarFile(root, blocks)), (error: unknown) => {
        assert.ok(error instanceof CarMissingBlockError)
        assert.equal(error.cid, record.toString())
        return true
      })
    })

    it('MSTs that are not canonical, even when correctly signed', async () => {
      const a = keyOnLayer(0)
      const b = keyOnLayer(0, Number(a.slice(13)) + 1)
      const [low1, low2] = [a, b].sort() as [string, string]
      const c = keyOnLayer(1)
      const d = keyOnLayer(1, Number(c.slice(13)) + 1)
      const [high1, high2] = [c, d].sort() as [string, string]

      const valid = await craftCar(key, async (blocks, v) => {
        const left = await addNode(blocks, [{ key: low1, value: v }])
        return addNode(blocks, [{ key: high1, value: v }], left)
      })
      const read = await readRepoCar(valid, { signingKey: key.did() })
      assert.deepEqual(
        read.records.map((r) => `${r.collection}/${r.rkey}`),
        [low1, high1].sort(),
      )

      type Build = (blocks: BlockMap, v: Cid) => Promise<Cid>
      const broken: [string, RegExp, Build][] = [
        [
          'keys out of order',
          /out of order/,
          (blocks, v) =>
            addNode(blocks, [
              { key: low2, value: v },
              { key: low1, value: v },
            ]),
        ],
        [
          'a duplicate key',
          /out of order/,
          (blocks, v) =>
            addNode(blocks, [
              { key: low1, value: v },
              { key: low1, value: v },
            ]),
        ],
        [
          'a key in a subtree outside its parent key range',
          /out of order/,
          async (blocks, v) => {
            const left = await addNode(blocks, [{ key: 'io.atcr.zzz/after', value: v }])
            return addNode(blocks, [{ key: high1, value: v }], left)
          },
        ],
        [
          'keys of two layers in one node',
          /another layer/,
          (blocks, v) =>
            addNode(
              blocks,
              [
                { key: low1, value: v },
                { key: high1, value: v },
              ].sort((x, y) => (x.key < y.key ? -1 : 1)),
            ),
        ],
        [
          'a subtree on the wrong layer',
          /at layer 1, expected 0/,
          async (blocks, v) => {
            const right = await addNode(blocks, [{ key: high2, value: v }])
            return addNode(blocks, [{ key: high1, value: v, subtree: right }])
          },
        ],
        [
          'a subtree under layer 0',
          /layer 0 points to a subtree/,
          async (blocks, v) => {
            const child = await addNode(blocks, [{ key: low2, value: v }])
            return addNode(blocks, [{ key: low1, value: v, subtree: child }])
          },
        ],
        [
          'an untrimmed root',
          /not trimmed/,
          async (blocks, v) =>
            addNode(blocks, [], await addNode(blocks, [{ key: low1, value: v }])),
        ],
        [
          'an empty subtree',
          /empty subtree/,
          async (blocks, v) =>
            addNode(blocks, [{ key: high1, value: v }], await addNode(blocks, [])),
        ],
        [
          'keys compressed other than by their common prefix',
          /canonically/,
          (blocks, v) =>
            addNode(
              blocks,
              [
                { key: low1, value: v },
                { key: low2, value: v },
              ],
              null,
              false,
            ),
        ],
        [
          'a key that is not collection/rkey',
          /invalid key/,
          (blocks, v) => addNode(blocks, [{ key: 'not a valid key', value: v }]),
        ],
      ]
      for (const [what, message, build] of broken) {
        const bad = await craftCar(key, build)
        await assert.rejects(readRepoCar(bad, { signingKey: key.did() }), (error: unknown) => {
          assert.ok(error instanceof InvalidMstError, `${what}: ${String(error)}`)
          assert.equal(error.code, 'InvalidMst')
          assert.match(error.message, message, what)
          return true
        })
      }
    })
  })
})
