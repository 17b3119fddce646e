import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { createStorageDriver, sendLocalRange } from '../src/storage/index.ts'
import { pooledBufferCount } from '../src/storage/send-local.ts'
import { storageConformance } from './storage-conformance.ts'

const MiB = 1024 * 1024
let root: string
const dirs: string[] = []

/** A temp dir of its own for one test, removed after the file's tests. */
async function freshDir(prefix: string): Promise<string> {
  const dir = await makeTempDir(prefix)
  dirs.push(dir)
  return dir
}

before(async () => {
  root = await freshDir('atcr-fs-storage-')
})
after(async () => {
  for (const dir of dirs) await removeTempDir(dir)
})

storageConformance({
  name: 'filesystem',
  open: () => createStorageDriver({ driver: 'filesystem', root }),
  presigns: false,
  observesAssembly: true,
  // Two write batches of about 1 MiB (measured: 1.1 MiB), plus slack.
  memoryBudget: 8 * MiB,
})

describe('filesystem storage driver on disk', () => {
  it('keeps objects as plain files under the root, and no temp files behind', async () => {
    const dir = await freshDir('atcr-fs-layout-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    await driver.write('blobs/sha256/ab/abcd/data', Readable.from([Buffer.from('layer')]))
    assert.equal(await readFile(join(dir, 'blobs/sha256/ab/abcd/data'), 'utf8'), 'layer')
    await assert.rejects(
      driver.write(
        'x/data',
        (async function* () {
          yield Buffer.from('partial')
          throw new Error('gone')
        })(),
      ),
      /gone/,
    )
    assert.deepEqual(await readdir(join(dir, '.tmp')), [])
    assert.deepEqual((await readdir(dir)).sort(), ['.multipart', '.tmp', 'blobs'])
  })

  it('removes folders left empty by delete, deletePrefix and move', async () => {
    const dir = await freshDir('atcr-fs-prune-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    await driver.write('a/b/c/data', Readable.from([Buffer.from('1')]))
    await driver.write('a/keep', Readable.from([Buffer.from('2')]))
    await driver.delete('a/b/c/data')
    assert.deepEqual(await readdir(join(dir, 'a')), ['keep'])
    await driver.write('u/1/x/data', Readable.from([Buffer.from('3')]))
    await driver.deletePrefix('u/1')
    await driver.write('m/1/data', Readable.from([Buffer.from('4')]))
    await driver.move('m/1/data', 'a/moved')
    assert.deepEqual((await readdir(dir)).sort(), ['.multipart', '.tmp', 'a'])
  })

  it('keeps a multipart upload as a folder of parts until it completes', async () => {
    const dir = await freshDir('atcr-fs-mp-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    const id = await driver.createMultipart('up/data')
    const stale = await driver.writePart(id, 1, Readable.from([Buffer.from('hello')]))
    const part = await driver.writePart(id, 1, Readable.from([Buffer.from('hello')]))
    const tag = /^"([0-9a-f]{32})"$/.exec(part.etag)?.[1]
    assert.ok(tag, `a quoted token, as S3 etags are: ${part.etag}`)
    assert.notEqual(part.etag, stale.etag, 'each version of a part has its own etag')
    // The first version went into the upload's stream file, the second to a file of its own.
    assert.deepEqual((await readdir(join(dir, '.multipart', id))).sort(), [
      `00001.${tag}`,
      'stream',
      'target',
    ])
    await assert.rejects(driver.completeMultipart(id, [stale]), { code: 'INVALID_PART' })
    await driver.completeMultipart(id, [part])
    assert.deepEqual(await readdir(join(dir, '.multipart')), [])
    assert.equal(await readFile(join(dir, 'up/data'), 'utf8'), 'hello')
  })

  it('writes parts sent in order into one file and publishes it without a copy', async () => {
    const dir = await freshDir('atcr-fs-stream-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    const id = await driver.createMultipart('up/data')
    const bytes = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(100)]
    const parts = []
    for (const [index, part] of bytes.entries()) {
      parts.push(await driver.writePart(id, index + 1, Readable.from([part])))
    }
    const stream = await stat(join(dir, '.multipart', id, 'stream'))
    assert.equal(stream.size, 10 * MiB + 100)
    await driver.completeMultipart(id, parts)
    assert.equal((await stat(join(dir, 'up/data'))).ino, stream.ino, 'the same file, not a copy')
    assert.ok((await readFile(join(dir, 'up/data'))).equals(Buffer.concat(bytes)))
    assert.deepEqual(await readdir(join(dir, '.multipart')), [])
  })

  it('assembles parts sent out of order, part of them in the stream file, in part order', async () => {
    const dir = await freshDir('atcr-fs-mixed-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    const id = await driver.createMultipart('up/data')
    const bytes = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(7)]
    const third = await driver.writePart(id, 3, Readable.from([bytes[2] as Buffer]))
    const first = await driver.writePart(id, 1, Readable.from([bytes[0] as Buffer]))
    const second = await driver.writePart(id, 2, Readable.from([bytes[1] as Buffer]))
    await driver.completeMultipart(id, [first, second, third])
    assert.ok((await readFile(join(dir, 'up/data'))).equals(Buffer.concat(bytes)))
  })

  it('keeps nothing of a part cut short, across a restart: the blob has exactly the parts', async () => {
    const dir = await freshDir('atcr-fs-cut-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    const id = await driver.createMultipart('up/data')
    const first = randomBytes(5 * MiB)
    const part1 = await driver.writePart(id, 1, Readable.from([first]))
    const failing = (async function* () {
      yield randomBytes(3 * MiB)
      throw new Error('client went away')
    })()
    await assert.rejects(driver.writePart(id, 2, failing), /client went away/)
    assert.equal(await driver.stat('up/data'), null, 'nothing published')

    // As after a crash: a new driver on the same root carries on with the upload.
    const restarted = await createStorageDriver({ driver: 'filesystem', root: dir })
    const second = randomBytes(1000)
    const part2 = await restarted.writePart(id, 2, Readable.from([second]))
    await restarted.completeMultipart(id, [part1, part2])
    const stored = await readFile(join(dir, 'up/data'))
    assert.equal(stored.length, first.length + second.length)
    assert.ok(stored.equals(Buffer.concat([first, second])))
  })

  it('sweeps temp files a crash left behind more than a day ago, on start', async () => {
    const dir = await freshDir('atcr-fs-sweep-')
    await createStorageDriver({ driver: 'filesystem', root: dir })
    const stale = join(dir, '.tmp', 'stale')
    const fresh = join(dir, '.tmp', 'fresh')
    await writeFile(stale, 'x')
    await writeFile(fresh, 'y')
    const old = new Date(Date.now() - 2 * 24 * 3600 * 1000)
    await utimes(stale, old, old)
    await createStorageDriver({ driver: 'filesystem', root: dir })
    await assert.rejects(stat(stale), { code: 'ENOENT' })
    assert.equal((await stat(fresh)).size, 1)
  })

  it('refuses to write where a folder or an object is in the way', async () => {
    const dir = await freshDir('atcr-fs-collide-')
    const driver = await createStorageDriver({ driver: 'filesystem', root: dir })
    await driver.write('f/data', Readable.from([Buffer.from('1')]))
    await assert.rejects(driver.write('f/data/inner', Readable.from([Buffer.from('2')])), {
      code: 'INVALID_PATH',
    })
    await assert.rejects(driver.write('f', Readable.from([Buffer.from('3')])), {
      code: 'INVALID_PATH',
    })
    assert.deepEqual(await readdir(join(dir, '.tmp')), [])
  })
})

describe('sending a local range', () => {
  /** Like a socket: copies each chunk when written, calls back a turn later. */
  function collector(): { sink: Writable; received: () => Buffer } {
    const chunks: Buffer[] = []
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(Buffer.from(chunk))
        setImmediate(callback)
      },
    })
    return { sink, received: () => Buffer.concat(chunks) }
  }

  it('sends concurrent downloads byte for byte, and reuses their buffers afterwards', async () => {
    const driver = await createStorageDriver({ driver: 'filesystem', root })
    const blobs = [randomBytes(1.5 * MiB), randomBytes(1.5 * MiB + 7)]
    await Promise.all(blobs.map((bytes, i) => driver.write(`send/${i}`, Readable.from([bytes]))))
    const pooled = pooledBufferCount()
    const sends = blobs.map(async (bytes, i) => {
      const local = await driver.openLocal!(`send/${i}`, { start: 1, end: bytes.length - 1 })
      const { sink, received } = collector()
      await sendLocalRange(local, sink)
      assert.ok(received().equals(bytes.subarray(1, bytes.length - 1)), `download ${i}`)
    })
    await Promise.all(sends)
    assert.equal(pooledBufferCount(), Math.min(16, pooled + 4))
    const local = await driver.openLocal!('send/0')
    const { sink, received } = collector()
    await sendLocalRange(local, sink)
    assert.ok(received().equals(blobs[0]!))
    assert.equal(pooledBufferCount(), Math.min(16, pooled + 4))
  })

  it('frees the buffers the pool has no room for as soon as their downloads end', async () => {
    const driver = await createStorageDriver({ driver: 'filesystem', root })
    const bytes = randomBytes(1.5 * MiB)
    await driver.write('send/many', Readable.from([bytes]))
    const want = createHash('sha256').update(bytes).digest('hex')
    const pooled = pooledBufferCount()
    const before = process.memoryUsage().arrayBuffers
    // 20 at once hold 40 buffers of 512 KiB; the pool keeps 16 of them.
    const sends = Array.from({ length: 20 }, async () => {
      const hash = createHash('sha256')
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          hash.update(chunk)
          setImmediate(callback)
        },
      })
      await sendLocalRange(await driver.openLocal!('send/many'), sink)
      assert.equal(hash.digest('hex'), want)
    })
    await Promise.all(sends)
    assert.equal(pooledBufferCount(), 16)
    const kept = process.memoryUsage().arrayBuffers - before
    assert.ok(kept <= (16 - pooled) * 512 * 1024 + MiB, `${kept} bytes of buffers kept`)
  })

  it('keeps no buffer of a download whose client went away', async () => {
    const driver = await createStorageDriver({ driver: 'filesystem', root })
    await driver.write('send/gone', Readable.from([randomBytes(2 * MiB)]))
    const pooled = pooledBufferCount()
    const local = await driver.openLocal!('send/gone')
    // A client that stops reading: the first write never completes.
    const stalled = new Writable({ write() {} })
    const sent = sendLocalRange(local, stalled)
    await new Promise((resolve) => setTimeout(resolve, 20))
    stalled.destroy()
    await sent
    assert.ok(pooledBufferCount() <= pooled, 'a buffer a pending write may hold went back')
  })
})
