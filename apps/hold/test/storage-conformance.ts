/**
 * The one behaviour every storage driver must have. A driver's test file calls
 * `storageConformance` with a way to open the driver over its storage; the suite opens it
 * again (a fresh instance over the same storage) to stand for a process restart.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { StorageDriver } from '../src/storage/driver.ts'
import {
  InvalidPartError,
  InvalidPathError,
  InvalidRangeError,
  PartTooSmallError,
  PathNotFoundError,
  SizeMismatchError,
  UploadNotFoundError,
} from '../src/storage/errors.ts'

export interface ConformanceTarget {
  name: string
  /** Opens a driver over the target's storage; each call is a new instance. */
  open(): Promise<StorageDriver>
  /** Whether the driver presigns URLs (then they are used with fetch). */
  presigns: boolean
  /** Whether completeMultipart shows the assembled bytes to `onData` (S3 assembles remotely). */
  observesAssembly: boolean
  /** Most extra memory (bytes) a 64 MiB streamed write may hold at once. */
  memoryBudget: number
}

const MiB = 1024 * 1024

export function storageConformance(target: ConformanceTarget): void {
  describe(`${target.name} storage driver conformance`, () => {
    let driver: StorageDriver
    before(async () => {
      driver = await target.open()
    })
    after(async () => {
      await driver.close()
    })

    it('round-trips bytes from a stream or an async generator, with stat', async () => {
      const data = randomBytes(300_000)
      const before = Date.now()
      assert.deepEqual(await driver.write('rt/a/data', Readable.from([data])), {
        size: data.length,
      })
      assert.deepEqual(await driver.write('rt/b/data', chunksOf(data, 7_000)), {
        size: data.length,
      })
      for (const path of ['rt/a/data', 'rt/b/data']) {
        assert.ok((await readAll(await driver.read(path))).equals(data))
        const stat = await driver.stat(path)
        assert.equal(stat?.size, data.length)
        // S3 keeps whole seconds.
        assert.ok(Math.abs((stat?.modifiedAt.getTime() ?? 0) - before) < 60_000)
      }
    })

    it('stores an empty object', async () => {
      assert.deepEqual(await driver.write('empty/data', chunksOf(Buffer.alloc(0), 1)), { size: 0 })
      assert.equal((await driver.stat('empty/data'))?.size, 0)
      assert.equal((await readAll(await driver.read('empty/data'))).length, 0)
      assert.equal((await readAll(await driver.read('empty/data', { start: 0 }))).length, 0)
    })

    it('reads byte ranges: start inclusive, end exclusive, end clamped to the size', async () => {
      const data = randomBytes(1000)
      await driver.write('range/data', Readable.from([data]))
      const read = async (start?: number, end?: number) =>
        readAll(await driver.read('range/data', { start, end }))
      assert.ok((await read(10, 20)).equals(data.subarray(10, 20)))
      assert.ok((await read(999)).equals(data.subarray(999)), 'last byte')
      assert.ok((await read(998, 1000)).equals(data.subarray(998)), 'last two bytes')
      assert.ok((await read(990, 5000)).equals(data.subarray(990)), 'end past the size')
      assert.ok((await read(undefined, 1)).equals(data.subarray(0, 1)), 'first byte')
      assert.ok((await read(0)).equals(data), 'from 0')
    })

    it('refuses unsatisfiable or malformed ranges with InvalidRangeError', async () => {
      await driver.write('range2/data', Readable.from([randomBytes(1000)]))
      for (const range of [{ start: 1000 }, { start: 5000, end: 6000 }]) {
        await assert.rejects(driver.read('range2/data', range), (err: unknown) => {
          assert.ok(err instanceof InvalidRangeError, String(err))
          assert.equal(err.size, 1000)
          return true
        })
      }
      for (const range of [{ start: 5, end: 5 }, { start: 9, end: 3 }, { start: -1 }]) {
        await assert.rejects(driver.read('range2/data', range), InvalidRangeError)
      }
      await driver.write('range2/empty', chunksOf(Buffer.alloc(0), 1))
      await assert.rejects(driver.read('range2/empty', { start: 0, end: 1 }), InvalidRangeError)
    })

    it('answers a missing path with null or PathNotFoundError', async () => {
      assert.equal(await driver.stat('missing/data'), null)
      await assert.rejects(driver.read('missing/data'), PathNotFoundError)
      await assert.rejects(driver.read('missing/data', { start: 5 }), PathNotFoundError)
      await assert.rejects(driver.move('missing/data', 'missing/other'), PathNotFoundError)
      await driver.delete('missing/data')
    })

    it('refuses paths outside the grammar with InvalidPathError', async () => {
      const bad = ['', '/abs', 'a//b', 'a/', '../up', 'a/../b', '.hidden', 'a/.b', 'a b', 'a\\b']
      for (const path of bad) {
        await assert.rejects(driver.stat(path), InvalidPathError, path)
        await assert.rejects(driver.write(path, chunksOf(Buffer.from('x'), 1)), InvalidPathError)
        await assert.rejects(driver.read(path), InvalidPathError, path)
        await assert.rejects(driver.createMultipart(path), InvalidPathError, path)
      }
      await assert.rejects(async () => {
        for await (const _ of driver.list('../')) break
      }, InvalidPathError)
    })

    it('overwrites an object', async () => {
      await driver.write('ow/data', Readable.from([randomBytes(5000)]))
      const second = randomBytes(1234)
      await driver.write('ow/data', Readable.from([second]))
      assert.ok((await readAll(await driver.read('ow/data'))).equals(second))
      assert.equal((await driver.stat('ow/data'))?.size, 1234)
    })

    it('deletes an object, and deleting it again is fine', async () => {
      await driver.write('del/data', Readable.from([Buffer.from('bye')]))
      await driver.delete('del/data')
      assert.equal(await driver.stat('del/data'), null)
      await assert.rejects(driver.read('del/data'), PathNotFoundError)
      await driver.delete('del/data')
    })

    it('deletes a folder with deletePrefix, and nothing beside it', async () => {
      for (const path of ['dp/x/1', 'dp/x/2/3', 'dp/xy/1', 'dp/y']) {
        await driver.write(path, Readable.from([Buffer.from(path)]))
      }
      await driver.deletePrefix('dp/x')
      assert.deepEqual(await paths(driver.list('dp')), ['dp/xy/1', 'dp/y'])
      await driver.deletePrefix('dp/x/')
      await driver.deletePrefix('dp/nothing-here')
      await assert.rejects(driver.deletePrefix(''), InvalidPathError)
      await assert.rejects(driver.deletePrefix('/'), InvalidPathError)
    })

    it('lists 1,100 objects (more than one S3 page) and a folder of them', async () => {
      const count = 1100
      await inBatches(count, 32, (i) =>
        driver.write(`many/${i % 10}/${i}`, Readable.from([Buffer.alloc(i % 7, 1)])),
      )
      const listed = await collect(driver.list('many'))
      assert.equal(listed.length, count)
      const expected = Array.from({ length: count }, (_, i) => `many/${i % 10}/${i}`).sort()
      assert.deepEqual(listed.map((entry) => entry.path).sort(), expected)
      for (const entry of listed) {
        const i = Number(entry.path.split('/')[2])
        assert.equal(entry.size, i % 7)
        assert.ok(entry.modifiedAt instanceof Date)
      }
      assert.equal((await collect(driver.list('many/3/'))).length, count / 10)
      assert.deepEqual(await collect(driver.list('many/3/33')), [], 'an object is not a folder')
      assert.deepEqual(await collect(driver.list('no-such-folder')), [])
      const everything = await paths(driver.list(''))
      assert.ok(everything.includes('many/0/0') && everything.includes('rt/a/data'))
      await driver.deletePrefix('many')
      assert.deepEqual(await collect(driver.list('many')), [])
    })

    it('moves an object, replacing the target', async () => {
      const data = randomBytes(70_000)
      await driver.write('mv/from/data', Readable.from([data]))
      await driver.write('mv/to/data', Readable.from([Buffer.from('old')]))
      await driver.move('mv/from/data', 'mv/to/data')
      assert.equal(await driver.stat('mv/from/data'), null)
      assert.ok((await readAll(await driver.read('mv/to/data'))).equals(data))
      await driver.move('mv/to/data', 'mv/elsewhere/deeper/data')
      assert.ok((await readAll(await driver.read('mv/elsewhere/deeper/data'))).equals(data))
      assert.equal(await driver.stat('mv/to/data'), null)
    })

    it('assembles a multipart upload of 5 MiB + 5 MiB + a small last part', async () => {
      const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1234)]
      const id = await driver.createMultipart('mp/ok/data')
      // Out of order, one part replaced, one body of declared size, one of unknown size.
      const third = await driver.writePart(id, 3, chunksOf(parts[2]!, 1000), { size: 1234 })
      await driver.writePart(id, 2, chunksOf(randomBytes(5 * MiB), MiB))
      const second = await driver.writePart(id, 2, chunksOf(parts[1]!, 256 * 1024))
      const first = await driver.writePart(id, 1, Readable.from([parts[0]!]), { size: 5 * MiB })
      assert.deepEqual(
        [first, second, third].map(({ partNumber, size }) => [partNumber, size]),
        [
          [1, 5 * MiB],
          [2, 5 * MiB],
          [3, 1234],
        ],
      )
      assert.equal(await driver.stat('mp/ok/data'), null, 'nothing visible before completion')
      const result = await driver.completeMultipart(id, [first, second, third])
      const whole = Buffer.concat(parts)
      assert.deepEqual(result, { size: whole.length })
      assert.ok((await readAll(await driver.read('mp/ok/data'))).equals(whole))
      assert.ok(
        (
          await readAll(await driver.read('mp/ok/data', { start: 5 * MiB - 2, end: 5 * MiB + 2 }))
        ).equals(whole.subarray(5 * MiB - 2, 5 * MiB + 2)),
        'a range across the part boundary',
      )
      // The upload is over.
      await assert.rejects(
        driver.writePart(id, 4, chunksOf(Buffer.from('x'), 1)),
        UploadNotFoundError,
      )
      await assert.rejects(
        driver.completeMultipart(id, [first, second, third]),
        UploadNotFoundError,
      )
    })

    it('shows assembled bytes to onData in order when it assembles them itself', async () => {
      for (const sizes of [[5 * MiB, 5 * MiB, 777], [3000]]) {
        const parts = sizes.map((size) => randomBytes(size))
        const id = await driver.createMultipart('mp/observed/data')
        const written = []
        for (const [i, part] of parts.entries()) {
          written.push(await driver.writePart(id, i + 1, Readable.from([part])))
        }
        const hash = createHash('sha256')
        let seen = 0
        const result = await driver.completeMultipart(id, written, {
          onData: (chunk) => {
            hash.update(chunk)
            seen += chunk.length
          },
        })
        const whole = Buffer.concat(parts)
        assert.equal(result.observed === true, target.observesAssembly)
        if (target.observesAssembly) {
          assert.equal(seen, whole.length, `${sizes.length} part(s): every byte once`)
          assert.equal(hash.digest('hex'), createHash('sha256').update(whole).digest('hex'))
        } else {
          assert.equal(seen, 0, 'a driver that does not observe never calls onData')
        }
        assert.ok((await readAll(await driver.read('mp/observed/data'))).equals(whole))
      }
    })

    it('keeps nothing at the target when onData throws; the upload completes later', async () => {
      const id = await driver.createMultipart('mp/refused/data')
      const part = await driver.writePart(id, 1, Readable.from([randomBytes(4096)]))
      const refusal = new Error('refused by the observer')
      const attempt = driver.completeMultipart(id, [part], {
        onData: () => {
          throw refusal
        },
      })
      const outcome = await attempt.then(
        (result) => result,
        (error: unknown) => error,
      )
      if (outcome === refusal) {
        assert.equal(await driver.stat('mp/refused/data'), null)
        assert.equal((await driver.completeMultipart(id, [part])).size, 4096)
      } else {
        assert.ok(
          !(outcome as { observed?: boolean }).observed,
          'only a non-observing driver succeeds',
        )
      }
    })

    it('refuses a bad part list, keeps nothing at the target, keeps the upload open', async () => {
      const id = await driver.createMultipart('mp/bad/data')
      const p1 = await driver.writePart(id, 1, Readable.from([randomBytes(5 * MiB)]))
      const p2 = await driver.writePart(id, 2, Readable.from([randomBytes(100)]))
      const p3 = await driver.writePart(id, 3, Readable.from([randomBytes(100)]))
      const refusals: [string, Parameters<StorageDriver['completeMultipart']>[1], unknown][] = [
        ['wrong etag', [p1, { partNumber: 2, etag: p3.etag }], InvalidPartError],
        [
          'made-up etag',
          [p1, { partNumber: 2, etag: '"0123456789abcdef0123456789abcdef"' }],
          InvalidPartError,
        ],
        ['missing part', [p1, { partNumber: 4, etag: p3.etag }], InvalidPartError],
        ['descending', [p2, p1], InvalidPartError],
        ['empty list', [], InvalidPartError],
        ['part number 0', [{ partNumber: 0, etag: p1.etag }], InvalidPartError],
        ['small middle part', [p1, p2, p3], PartTooSmallError],
      ]
      for (const [why, list, error] of refusals) {
        await assert.rejects(driver.completeMultipart(id, list), error as typeof Error, why)
        assert.equal(await driver.stat('mp/bad/data'), null, why)
      }
      await assert.rejects(driver.writePart(id, 0, chunksOf(Buffer.from('x'), 1)), InvalidPartError)
      await assert.rejects(
        driver.writePart(id, 10_001, chunksOf(Buffer.from('x'), 1)),
        InvalidPartError,
      )
      const done = await driver.completeMultipart(id, [p1, p2])
      assert.equal(done.size, 5 * MiB + 100)
      assert.equal((await driver.stat('mp/bad/data'))?.size, 5 * MiB + 100)
    })

    it('checks a declared part size against the body', async () => {
      const id = await driver.createMultipart('mp/size/data')
      await assert.rejects(
        driver.writePart(id, 1, chunksOf(randomBytes(5), 1), { size: 10 }),
        SizeMismatchError,
        'short body',
      )
      await assert.rejects(
        driver.writePart(id, 1, chunksOf(randomBytes(10), 3), { size: 5 }),
        SizeMismatchError,
        'long body',
      )
      const data = randomBytes(10)
      const part = await driver.writePart(id, 1, chunksOf(data, 3), { size: 10 })
      await driver.completeMultipart(id, [part])
      assert.ok((await readAll(await driver.read('mp/size/data'))).equals(data))
    })

    it('keeps multipart state across a restart', async () => {
      const parts = [randomBytes(5 * MiB), randomBytes(777)]
      const id = await driver.createMultipart('mp/restart/data')
      const first = await driver.writePart(id, 1, Readable.from([parts[0]!]))
      const restarted = await target.open()
      try {
        const second = await restarted.writePart(id, 2, Readable.from([parts[1]!]))
        await restarted.completeMultipart(id, [first, second])
        assert.ok(
          (await readAll(await restarted.read('mp/restart/data'))).equals(Buffer.concat(parts)),
        )
      } finally {
        await restarted.close()
      }
    })

    it('aborts an upload: its id stops working and nothing appears', async () => {
      const id = await driver.createMultipart('mp/abort/data')
      const part = await driver.writePart(id, 1, Readable.from([randomBytes(1000)]))
      await driver.abortMultipart(id)
      await assert.rejects(
        driver.writePart(id, 2, chunksOf(Buffer.from('x'), 1)),
        UploadNotFoundError,
      )
      await assert.rejects(driver.completeMultipart(id, [part]), UploadNotFoundError)
      assert.equal(await driver.stat('mp/abort/data'), null)
      await driver.abortMultipart(id)
    })

    it('answers made-up upload ids with UploadNotFoundError', async () => {
      for (const id of ['nope', '', '../../etc', 'bm9wZQ']) {
        await assert.rejects(
          driver.writePart(id, 1, chunksOf(Buffer.from('x'), 1)),
          UploadNotFoundError,
        )
        await assert.rejects(
          driver.completeMultipart(id, [{ partNumber: 1, etag: '"x"' }]),
          UploadNotFoundError,
        )
        await driver.abortMultipart(id)
      }
    })

    it('keeps the old object when a write fails mid-stream, and reports the source error', async () => {
      const old = randomBytes(1000)
      await driver.write('fail/data', Readable.from([old]))
      const boom = new Error('client went away')
      async function* failing() {
        yield randomBytes(6 * MiB)
        yield randomBytes(6 * MiB)
        throw boom
      }
      await assert.rejects(driver.write('fail/data', failing()), (err) => err === boom)
      await assert.rejects(driver.write('fail/new/data', failing()), (err) => err === boom)
      assert.ok((await readAll(await driver.read('fail/data'))).equals(old))
      assert.equal(await driver.stat('fail/new/data'), null)
      const id = await driver.createMultipart('fail/part/data')
      await assert.rejects(driver.writePart(id, 1, failing()), (err) => err === boom)
      await assert.rejects(
        driver.writePart(id, 1, failing(), { size: 20 * MiB }),
        (err) => err === boom,
      )
      await driver.abortMultipart(id)
    })

    it('shows readers the old object until a slow write has finished', async () => {
      const old = randomBytes(100_000)
      await driver.write('slow/data', Readable.from([old]))
      const next = randomBytes(12 * MiB)
      let release!: () => void
      const gate = new Promise<void>((resolve) => {
        release = resolve
      })
      let halfway!: () => void
      const reachedHalfway = new Promise<void>((resolve) => {
        halfway = resolve
      })
      async function* slow() {
        yield next.subarray(0, 9 * MiB)
        halfway()
        await gate
        yield next.subarray(9 * MiB)
      }
      const writing = driver.write('slow/data', slow())
      await reachedHalfway
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.ok((await readAll(await driver.read('slow/data'))).equals(old))
      assert.equal((await driver.stat('slow/data'))?.size, old.length)
      release()
      await writing
      assert.ok((await readAll(await driver.read('slow/data'))).equals(next))
    })

    it('streams a 64 MiB write and read with bounded memory', async () => {
      const total = 64 * MiB
      const chunk = MiB
      const gc = exposeGc()
      const baseline = await settledMemory(gc)
      let peak = 0
      const written = createHash('sha256')
      async function* generate() {
        for (let offset = 0; offset < total; offset += chunk) {
          const bytes = Buffer.alloc(chunk, offset / chunk)
          bytes.writeUInt32BE(offset, 0)
          written.update(bytes)
          yield bytes
          if ((offset / chunk) % 4 === 3)
            peak = Math.max(peak, (await settledMemory(gc)) - baseline)
        }
      }
      assert.deepEqual(await driver.write('big/data', generate()), { size: total })
      assert.ok(
        peak < target.memoryBudget,
        `write held ${(peak / MiB).toFixed(1)} MiB, budget ${target.memoryBudget / MiB} MiB`,
      )
      assert.ok(
        target.memoryBudget <= total / 2,
        'a budget that could hold the object proves nothing',
      )
      const read = createHash('sha256')
      let size = 0
      let readPeak = 0
      for await (const piece of await driver.read('big/data')) {
        read.update(piece as Buffer)
        size += (piece as Buffer).length
        if (size % (8 * MiB) < (piece as Buffer).length) {
          readPeak = Math.max(readPeak, (await settledMemory(gc)) - baseline)
        }
      }
      assert.equal(size, total)
      assert.equal(read.digest('hex'), written.digest('hex'))
      assert.ok(readPeak < target.memoryBudget, `read held ${(readPeak / MiB).toFixed(1)} MiB`)
      await driver.delete('big/data')
    })

    if (target.presigns) {
      it('presigns GET and part PUT URLs that work with plain fetch', async () => {
        const data = randomBytes(4321)
        await driver.write('ps/get/data', Readable.from([data]))
        const url = await driver.presignGet('ps/get/data', { ttl: 60 })
        assert.ok(url)
        const response = await fetch(url)
        assert.equal(response.status, 200)
        assert.ok(Buffer.from(await response.arrayBuffer()).equals(data))

        const parts = [randomBytes(5 * MiB), randomBytes(999)]
        const id = await driver.createMultipart('ps/put/data')
        const presigned = await driver.presignPart(id, 1)
        assert.ok(presigned)
        assert.equal(presigned.method, 'PUT')
        assert.ok(presigned.expiresAt.getTime() > Date.now())
        const put = await fetch(presigned.url, {
          method: 'PUT',
          headers: presigned.headers,
          body: parts[0]!,
        })
        assert.equal(put.status, 200)
        const etag = put.headers.get('etag')
        assert.ok(etag)
        const second = await driver.writePart(id, 2, Readable.from([parts[1]!]))
        await driver.completeMultipart(id, [{ partNumber: 1, etag }, second])
        assert.ok((await readAll(await driver.read('ps/put/data'))).equals(Buffer.concat(parts)))
      })
    } else {
      it('says it cannot presign by returning null', async () => {
        await driver.write('ps/none/data', Readable.from([Buffer.from('x')]))
        assert.equal(await driver.presignGet('ps/none/data'), null)
        const id = await driver.createMultipart('ps/none/upload')
        assert.equal(await driver.presignPart(id, 1), null)
        await driver.abortMultipart(id)
      })
    }
  })
}

export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += size) {
    yield data.subarray(offset, offset + size)
  }
}

export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

async function paths(items: AsyncIterable<{ path: string }>): Promise<string[]> {
  return (await collect(items)).map((item) => item.path).sort()
}

async function inBatches(
  count: number,
  width: number,
  task: (index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < count) await task(next++)
    }),
  )
}

function exposeGc(): () => void {
  setFlagsFromString('--expose-gc')
  return runInNewContext('gc') as () => void
}

/**
 * Memory that buffering would grow, JS heap plus Buffer backing stores, after a full
 * collection. Backing stores are freed off-thread after a collection, hence the pause and
 * the second collection.
 */
async function settledMemory(gc: () => void): Promise<number> {
  gc()
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}
