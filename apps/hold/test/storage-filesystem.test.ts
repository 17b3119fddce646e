import assert from 'node:assert/strict'
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { createStorageDriver } from '../src/storage/index.ts'
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
    assert.deepEqual((await readdir(join(dir, '.multipart', id))).sort(), [
      `00001.${tag}`,
      'target',
    ])
    await assert.rejects(driver.completeMultipart(id, [stale]), { code: 'INVALID_PART' })
    await driver.completeMultipart(id, [part])
    assert.deepEqual(await readdir(join(dir, '.multipart')), [])
    assert.equal(await readFile(join(dir, 'up/data'), 'utf8'), 'hello')
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
