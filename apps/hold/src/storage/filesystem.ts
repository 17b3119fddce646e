import { randomBytes, randomUUID } from 'node:crypto'
import { constants } from 'node:fs'
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  opendir,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  stat,
  statfs,
  truncate,
  unlink,
  utimes,
} from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { release } from '@atcr/core/memory'
import { ByteCounter } from './bytes.ts'
import type {
  ByteRange,
  ByteSource,
  CompleteMultipartOptions,
  CompleteMultipartResult,
  LocalRange,
  ObjectInfo,
  ObjectStat,
  PartRef,
  PresignedRequest,
  StorageDriver,
  UploadedPart,
  WritePartOptions,
  WriteResult,
} from './driver.ts'
import {
  InvalidPartError,
  InvalidPathError,
  PartTooSmallError,
  PathNotFoundError,
  StorageBackendError,
  StorageError,
  StorageFullError,
  UploadNotFoundError,
} from './errors.ts'
import {
  bareEtag,
  MAX_PART_SIZE,
  MIN_PART_SIZE,
  normalizeRange,
  resolveRange,
  validateDeclaredSize,
  validatePartList,
  validatePartNumber,
  validatePath,
  validatePrefix,
} from './validate.ts'

export interface FilesystemDriverConfig {
  driver: 'filesystem'
  /** A directory owned by the driver alone. */
  root: string
  /** Signs the URLs `presignGet` hands out (they are served by the hold); none: no presigning. */
  signer?: { sign(path: string): string }
}

// Driver state lives beside the objects under names no storage path can take (paths never
// have segments starting with '.'), on the same filesystem so that renames are atomic.
const TEMP_DIR = '.tmp'
const MULTIPART_DIR = '.multipart'
const TARGET_FILE = 'target'
const STALE_TEMP_MS = 24 * 3600 * 1000
const WRITE_BATCH = 1024 * 1024
const COPY_BUFFER = 1024 * 1024
const READ_HIGH_WATER_MARK = 256 * 1024
const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// A part's etag names its version: 16 random bytes in hex (the form MD5 etags had, so
// parts stored before still match). Nobody checks a part etag against its bytes (S3
// clients send Content-MD5 for that; the AppView does not), and the blob's digest is
// verified whole at completion: hashing every part with MD5 cost CPU for nothing.
const PART_TAG = /^[0-9a-f]{32}$/
// Parts sent in order are written straight into one file of the upload (STREAM_FILE), each
// at the offset where the one before it ended, and recorded by an empty marker file
// `<00001>.<etag>@<offset>+<size>` created once its bytes are durable. Completing parts
// 1..n that all sit there, one after the other, needs no copy: the file is cut to their
// total (a part cut short by a crash or a failed request may have left bytes after it)
// and hard-linked into place. Any other part goes to a file of its own, as before.
const STREAM_FILE = 'stream'
const STREAM_MARKER = /^(\d{5})\.([0-9a-f]{32})@(\d+)\+(\d+)$/

/**
 * Objects as plain files under `root` (`root/<path>`). A write goes to a temp file under
 * `root/.tmp`, is fdatasync'ed, then renamed into place, and the directory is fsync'ed:
 * readers see the old object or the whole new one. A multipart upload is a folder
 * `root/.multipart/<id>/` holding the target path and one file per part
 * (`<00001>.<random etag>`), so it survives restarts; completing concatenates the parts (or, for
 * a single part, hard-links it: no copy). Completion shows the assembled bytes to
 * `onData` as it copies them, one read of the parts and one write, with nothing read back
 * (a hard-linked part is read once, for `onData` alone).
 */
export async function createFilesystemDriver(
  config: FilesystemDriverConfig,
): Promise<StorageDriver> {
  const driver = new FilesystemDriver(config.root, config.signer)
  await driver.init()
  return driver
}

class FilesystemDriver implements StorageDriver {
  readonly kind = 'filesystem' as const
  readonly #root: string
  readonly #temp: string
  readonly #multipart: string

  readonly #signer: FilesystemDriverConfig['signer']
  /**
   * Uploads whose stream file is being written or completed (one process owns the root):
   * no two appends at once, and none once completion has linked the file.
   */
  readonly #streamBusy = new Set<string>()

  constructor(root: string, signer?: FilesystemDriverConfig['signer']) {
    this.#signer = signer
    this.#root = root
    this.#temp = join(root, TEMP_DIR)
    this.#multipart = join(root, MULTIPART_DIR)
  }

  async init(): Promise<void> {
    try {
      await mkdir(this.#temp, { recursive: true })
      await mkdir(this.#multipart, { recursive: true })
      await this.#sweepTemp()
    } catch (err) {
      throw wrap('init', err)
    }
  }

  async stat(path: string): Promise<ObjectStat | null> {
    const file = this.#file(path)
    try {
      const info = await stat(file)
      return info.isFile() ? { size: info.size, modifiedAt: info.mtime } : null
    } catch (err) {
      if (isMissing(err)) return null
      throw wrap('stat', err)
    }
  }

  async read(path: string, range?: ByteRange): Promise<Readable> {
    const local = await this.openLocal(path, range)
    if (local.end === local.start) {
      return local.handle.createReadStream({ highWaterMark: READ_HIGH_WATER_MARK })
    }
    return local.handle.createReadStream({
      start: local.start,
      end: local.end - 1,
      highWaterMark: READ_HIGH_WATER_MARK,
    })
  }

  async openLocal(path: string, range?: ByteRange): Promise<LocalRange> {
    const file = this.#file(path)
    const wanted = normalizeRange(path, range)
    let handle: FileHandle
    try {
      handle = await open(file, 'r')
    } catch (err) {
      if (isMissing(err) || errno(err) === 'EISDIR') throw new PathNotFoundError(path)
      throw wrap('read', err)
    }
    try {
      const info = await handle.stat()
      if (!info.isFile()) throw new PathNotFoundError(path)
      if (wanted === null) return { handle, start: 0, end: info.size }
      const { first, last } = resolveRange(path, wanted, info.size)
      return { handle, start: first, end: last + 1 }
    } catch (err) {
      await handle.close().catch(() => {})
      throw wrap('read', err)
    }
  }

  async write(path: string, source: ByteSource): Promise<WriteResult> {
    const file = this.#file(path)
    const counter = new ByteCounter('object', Number.MAX_SAFE_INTEGER)
    let temp: string
    try {
      temp = await this.#writeTemp(counter.through(source))
    } catch (err) {
      throw counter.blame(err)
    }
    try {
      await this.#commit(temp, file, path)
    } catch (err) {
      await rm(temp, { force: true })
      throw wrap('write', err)
    }
    return { size: counter.total }
  }

  async delete(path: string): Promise<void> {
    const file = this.#file(path)
    try {
      await unlink(file)
    } catch (err) {
      // A folder at `path` is not an object: nothing to delete.
      if (isMissing(err) || errno(err) === 'EISDIR' || errno(err) === 'EPERM') return
      throw wrap('delete', err)
    }
    await this.#pruneEmptyParents(dirname(file))
  }

  async deletePrefix(prefix: string): Promise<void> {
    const folder = validatePrefix(prefix)
    if (folder === '') throw new InvalidPathError(prefix, 'deletePrefix needs a non-empty prefix')
    const dir = join(this.#root, folder)
    try {
      const info = await lstat(dir)
      if (!info.isDirectory()) return
      await rm(dir, { recursive: true, force: true })
    } catch (err) {
      if (isMissing(err)) return
      throw wrap('deletePrefix', err)
    }
    await this.#pruneEmptyParents(dirname(dir))
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const folder = validatePrefix(prefix)
    yield* this.#walk(folder === '' ? this.#root : join(this.#root, folder))
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.#file(from)
    const target = this.#file(to)
    try {
      const info = await stat(source)
      if (!info.isFile()) throw new PathNotFoundError(from)
      if (source === target) return
      await this.#commit(source, target, to)
    } catch (err) {
      if (isMissing(err)) throw new PathNotFoundError(from)
      throw wrap('move', err)
    }
    await this.#syncDir(dirname(source))
    await this.#pruneEmptyParents(dirname(source))
  }

  async createMultipart(path: string): Promise<string> {
    validatePath(path)
    const id = randomUUID()
    // Built under .tmp and renamed into place, so an upload folder always has its target.
    const staging = join(this.#temp, `mp-${id}`)
    try {
      await mkdir(staging)
      const handle = await open(join(staging, TARGET_FILE), 'wx')
      try {
        await handle.writeFile(path)
        await handle.datasync()
      } finally {
        await handle.close()
      }
      await rename(staging, join(this.#multipart, id))
      await this.#syncDir(this.#multipart)
    } catch (err) {
      await rm(staging, { recursive: true, force: true })
      throw wrap('createMultipart', err)
    }
    return id
  }

  async writePart(
    uploadId: string,
    partNumber: number,
    source: ByteSource,
    options?: WritePartOptions,
  ): Promise<UploadedPart> {
    validatePartNumber(partNumber)
    validateDeclaredSize(options?.size, MAX_PART_SIZE)
    const dir = this.#uploadDir(uploadId)
    await this.#uploadTarget(uploadId)
    const counter = new ByteCounter('part', MAX_PART_SIZE, options?.size)
    if (!this.#streamBusy.has(uploadId)) {
      const offset = streamEnd(await this.#entries(uploadId), partNumber)
      if (offset !== null && !this.#streamBusy.has(uploadId)) {
        return this.#appendPart(uploadId, partNumber, offset, counter, source, options)
      }
    }
    let temp: string
    try {
      temp = await this.#writeTemp(counter.through(source), {
        handOver: options?.handOver === true,
      })
    } catch (err) {
      throw counter.blame(err)
    }
    const tag = randomBytes(16).toString('hex')
    const name = `${partName(partNumber)}.${tag}`
    try {
      await rename(temp, join(dir, name))
    } catch (err) {
      await rm(temp, { force: true })
      if (isMissing(err)) throw new UploadNotFoundError(uploadId)
      throw wrap('writePart', err)
    }
    await this.#syncDir(dir)
    await this.#dropOtherVersions(dir, partNumber, name)
    return { partNumber, etag: `"${tag}"`, size: counter.total }
  }

  /** Writes the part into the stream file at `offset` (see STREAM_FILE). */
  async #appendPart(
    uploadId: string,
    partNumber: number,
    offset: number,
    counter: ByteCounter,
    source: ByteSource,
    options?: WritePartOptions,
  ): Promise<UploadedPart> {
    const dir = this.#uploadDir(uploadId)
    this.#streamBusy.add(uploadId)
    try {
      let handle: FileHandle | undefined
      try {
        handle = await open(join(dir, STREAM_FILE), constants.O_RDWR | constants.O_CREAT)
        await writeBatched(handle, counter.through(source), {
          handOver: options?.handOver === true,
          position: offset,
        })
        await handle.datasync()
      } catch (err) {
        await dropTail(join(dir, STREAM_FILE), offset)
        throw counter.blame(
          isMissing(err) ? new UploadNotFoundError(uploadId) : wrap('writePart', err),
        )
      } finally {
        await handle?.close().catch(() => {})
      }
      const tag = randomBytes(16).toString('hex')
      const name = `${partName(partNumber)}.${tag}@${offset}+${counter.total}`
      try {
        await (await open(join(dir, name), 'wx')).close()
      } catch (err) {
        if (isMissing(err)) throw new UploadNotFoundError(uploadId)
        throw wrap('writePart', err)
      }
      await this.#syncDir(dir)
      await this.#dropOtherVersions(dir, partNumber, name)
      return { partNumber, etag: `"${tag}"`, size: counter.total }
    } finally {
      this.#streamBusy.delete(uploadId)
    }
  }

  async #entries(uploadId: string): Promise<string[]> {
    try {
      return await readdir(this.#uploadDir(uploadId))
    } catch (err) {
      if (isMissing(err)) throw new UploadNotFoundError(uploadId)
      throw wrap('multipart', err)
    }
  }

  async presignPart(): Promise<PresignedRequest | null> {
    return null
  }

  async completeMultipart(
    uploadId: string,
    parts: readonly PartRef[],
    options?: CompleteMultipartOptions,
  ): Promise<CompleteMultipartResult> {
    validatePartList(parts)
    const dir = this.#uploadDir(uploadId)
    const path = await this.#uploadTarget(uploadId)
    if (this.#streamBusy.has(uploadId)) {
      throw new InvalidPartError('a part of this upload is still being written')
    }
    this.#streamBusy.add(uploadId)
    try {
      return await this.#complete(uploadId, dir, path, parts, options?.onData)
    } finally {
      this.#streamBusy.delete(uploadId)
    }
  }

  async #complete(
    uploadId: string,
    dir: string,
    path: string,
    parts: readonly PartRef[],
    onData: OnData | undefined,
  ): Promise<CompleteMultipartResult> {
    const file = this.#file(path)
    const entries = await this.#entries(uploadId)
    const streamFile = join(dir, STREAM_FILE)
    const files: Segment[] = []
    for (const part of parts) {
      const etag = bareEtag(part.etag)
      const unknown = new InvalidPartError(
        'not uploaded, or its etag does not match',
        part.partNumber,
      )
      if (!PART_TAG.test(etag)) throw unknown
      const name = `${partName(part.partNumber)}.${etag}`
      const marker = entries
        .map((entry) => STREAM_MARKER.exec(entry))
        .find((match) => match !== null && `${match[1]}.${match[2]}` === name)
      if (marker) {
        files.push({ path: streamFile, start: Number(marker[3]), size: Number(marker[4]) })
        continue
      }
      if (!entries.includes(name)) throw unknown
      let size: number
      try {
        size = (await stat(join(dir, name))).size
      } catch (err) {
        if (isMissing(err)) throw unknown
        throw wrap('completeMultipart', err)
      }
      files.push({ path: join(dir, name), start: 0, size })
    }
    // Sizes only once every part is known to exist, as S3 orders its checks.
    for (const [index, file] of files.entries()) {
      if (index < files.length - 1 && file.size < MIN_PART_SIZE) {
        throw new PartTooSmallError(MIN_PART_SIZE, parts[index]?.partNumber, file.size)
      }
    }
    const [first] = files
    let assembled: { temp: string; size: number } | null = null
    if (isWholeStream(files, streamFile)) {
      await this.#cutStream(
        streamFile,
        files.reduce((sum, f) => sum + f.size, 0),
      )
      assembled = await this.#linkTemp(streamFile, parts[0]?.partNumber, onData)
    } else if (files.length === 1 && first && first.path !== streamFile) {
      assembled = await this.#linkTemp(first.path, parts[0]?.partNumber, onData)
    }
    assembled ??= await this.#concatTemp(files, onData)
    try {
      await this.#commit(assembled.temp, file, path)
    } catch (err) {
      await rm(assembled.temp, { force: true })
      throw wrap('completeMultipart', err)
    }
    await this.abortMultipart(uploadId)
    return onData ? { size: assembled.size, observed: true } : { size: assembled.size }
  }

  /** Drops whatever a failed or cut-short part left after the parts' `total` bytes. */
  async #cutStream(streamFile: string, total: number): Promise<void> {
    try {
      const handle = await open(streamFile, 'r+')
      try {
        if ((await handle.stat()).size > total) {
          await handle.truncate(total)
          await handle.datasync()
        }
      } finally {
        await handle.close()
      }
    } catch (err) {
      throw wrap('completeMultipart', err)
    }
  }

  async abortMultipart(uploadId: string): Promise<void> {
    if (!UPLOAD_ID.test(uploadId)) return
    try {
      await rm(join(this.#multipart, uploadId), { recursive: true, force: true })
    } catch (err) {
      throw wrap('abortMultipart', err)
    }
  }

  async freeSpace(): Promise<number | null> {
    try {
      const info = await statfs(this.#root)
      return info.bavail * info.bsize
    } catch (err) {
      throw wrap('statfs', err)
    }
  }

  async presignGet(path: string): Promise<string | null> {
    validatePath(path)
    return this.#signer?.sign(path) ?? null
  }

  async close(): Promise<void> {}

  #file(path: string): string {
    return join(this.#root, validatePath(path))
  }

  #uploadDir(uploadId: string): string {
    if (!UPLOAD_ID.test(uploadId)) throw new UploadNotFoundError(uploadId)
    return join(this.#multipart, uploadId)
  }

  async #uploadTarget(uploadId: string): Promise<string> {
    try {
      const path = await readFile(join(this.#uploadDir(uploadId), TARGET_FILE), 'utf8')
      return validatePath(path)
    } catch (err) {
      if (isMissing(err) || err instanceof InvalidPathError) {
        throw new UploadNotFoundError(uploadId)
      }
      throw wrap('multipart', err)
    }
  }

  /** Streams `source` into a new fdatasync'ed temp file; returns its path. */
  async #writeTemp(source: AsyncIterable<Uint8Array>, options?: BatchOptions): Promise<string> {
    const temp = join(this.#temp, randomUUID())
    let handle: FileHandle | undefined
    try {
      handle = await open(temp, 'wx')
      await writeBatched(handle, source, options)
      await handle.datasync()
      await handle.close()
      return temp
    } catch (err) {
      await handle?.close().catch(() => {})
      await rm(temp, { force: true })
      throw wrap('write', err)
    }
  }

  /**
   * The files one after the other in a new fdatasync'ed temp file, each chunk shown to
   * `onData` while it is being written.
   */
  async #concatTemp(
    files: readonly Segment[],
    onData: OnData | undefined,
  ): Promise<{ temp: string; size: number }> {
    const temp = join(this.#temp, randomUUID())
    let handle: FileHandle | undefined
    try {
      handle = await open(temp, 'wx')
      const size = await copyFiles(files, handle, onData)
      await handle.datasync()
      await handle.close()
      return { temp, size }
    } catch (err) {
      await handle?.close().catch(() => {})
      await rm(temp, { force: true })
      throw unwrapObserver(err) ?? wrap('completeMultipart', err)
    }
  }

  /**
   * A second name for a part file under `.tmp` (parts are never changed in place, so the
   * object may share the part's bytes), dated now: the object's modification time is when
   * it was completed, as for any other write. Null where hard links are not supported.
   * `onData` sees the part's bytes once, read through the same buffer as a copy would be.
   */
  async #linkTemp(
    file: string,
    partNumber: number | undefined,
    onData: OnData | undefined,
  ): Promise<{ temp: string; size: number } | null> {
    const temp = join(this.#temp, randomUUID())
    try {
      await link(file, temp)
    } catch (err) {
      if (isMissing(err)) {
        throw new InvalidPartError('not uploaded, or its etag does not match', partNumber)
      }
      return null
    }
    try {
      const now = new Date()
      await utimes(temp, now, now)
      const size = onData
        ? await copyFiles([{ path: temp, start: 0, size: Number.POSITIVE_INFINITY }], null, onData)
        : (await stat(temp)).size
      return { temp, size }
    } catch (err) {
      await rm(temp, { force: true })
      throw unwrapObserver(err) ?? wrap('completeMultipart', err)
    }
  }

  /** Renames `from` onto `file` (creating folders), then makes the rename durable. */
  async #commit(from: string, file: string, path: string): Promise<void> {
    const parent = dirname(file)
    // A concurrent delete may prune a folder between mkdir and rename: try again.
    for (let attempt = 0; ; attempt++) {
      let created: string | undefined
      try {
        created = await mkdir(parent, { recursive: true })
        await rename(from, file)
      } catch (err) {
        const code = errno(err)
        if (code === 'ENOENT' && attempt < 3) continue
        if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST') {
          throw new InvalidPathError(path, 'collides with an existing object or folder')
        }
        throw err
      }
      // New folders need their own entries made durable, from the first one created down.
      const start = created === undefined ? parent : dirname(created)
      for (let dir = parent; ; dir = dirname(dir)) {
        await this.#syncDir(dir)
        if (dir === start || dir === this.#root || dirname(dir) === dir) break
      }
      return
    }
  }

  async #syncDir(dir: string): Promise<void> {
    try {
      const handle = await open(dir, 'r')
      try {
        await handle.sync()
      } finally {
        await handle.close()
      }
    } catch (err) {
      if (!isMissing(err)) throw wrap('fsync', err)
    }
  }

  async #pruneEmptyParents(dir: string): Promise<void> {
    for (let current = dir; current !== this.#root && isInside(this.#root, current); ) {
      try {
        await rmdir(current)
      } catch {
        return
      }
      current = dirname(current)
    }
  }

  async #dropOtherVersions(dir: string, partNumber: number, keep: string): Promise<void> {
    const prefix = `${partName(partNumber)}.`
    try {
      for (const name of await readdir(dir)) {
        if (name.startsWith(prefix) && name !== keep) await rm(join(dir, name), { force: true })
      }
    } catch {
      // Best effort: a stale version only costs space until the upload ends.
    }
  }

  async *#walk(dir: string): AsyncGenerator<ObjectInfo> {
    let handle: Awaited<ReturnType<typeof opendir>>
    try {
      handle = await opendir(dir)
    } catch (err) {
      if (isMissing(err)) return
      throw wrap('list', err)
    }
    for await (const entry of handle) {
      if (entry.name.startsWith('.')) continue
      const full = join(dir, entry.name)
      if (entry.isDirectory()) {
        yield* this.#walk(full)
      } else if (entry.isFile()) {
        let info: Awaited<ReturnType<typeof stat>>
        try {
          info = await stat(full)
        } catch (err) {
          if (isMissing(err)) continue
          throw wrap('list', err)
        }
        yield {
          path: relative(this.#root, full).split(sep).join('/'),
          size: info.size,
          modifiedAt: info.mtime,
        }
      }
    }
  }

  async #sweepTemp(): Promise<void> {
    const cutoff = Date.now() - STALE_TEMP_MS
    for (const name of await readdir(this.#temp)) {
      const full = join(this.#temp, name)
      const info = await lstat(full).catch(() => null)
      if (info !== null && info.mtimeMs < cutoff) await rm(full, { recursive: true, force: true })
    }
  }
}

type OnData = NonNullable<CompleteMultipartOptions['onData']>

/** Carries an error thrown by `onData` past `wrap`, to be rethrown as it was. */
class ObserverFailure {
  readonly error: unknown
  constructor(error: unknown) {
    this.error = error
  }
}

function unwrapObserver(err: unknown): unknown {
  return err instanceof ObserverFailure ? err.error : undefined
}

/**
 * Reads the files one after the other through one reused buffer (nothing allocated per
 * chunk, whatever the size), appending each chunk to `out` (when given) and showing it to
 * `onData` while the write is in flight: the hashing overlaps the write, and the buffer is
 * only read by both until the write has settled. Returns the number of bytes read.
 */
async function copyFiles(
  files: readonly Segment[],
  out: FileHandle | null,
  onData: OnData | undefined,
): Promise<number> {
  const buffer = Buffer.allocUnsafeSlow(COPY_BUFFER)
  let total = 0
  for (const file of files) {
    const input = await open(file.path, 'r')
    try {
      for (let done = 0; done < file.size; ) {
        const want = Math.min(buffer.length, file.size - done)
        const { bytesRead } = await input.read(buffer, 0, want, file.start + done)
        if (bytesRead === 0) break
        done += bytesRead
        const chunk = buffer.subarray(0, bytesRead)
        const writing = out ? writeAll(out, [chunk]) : null
        try {
          onData?.(chunk)
        } catch (err) {
          await writing?.catch(() => {})
          throw new ObserverFailure(err)
        }
        await writing
        total += bytesRead
      }
    } finally {
      await input.close()
    }
  }
  return total
}

/**
 * Gives back the space of a part that failed (a refused or cut-off request, a full disk):
 * the stream file is cut to where the part began, or removed when nothing came before it.
 * Best effort: what stays (after a crash too) is never published (see STREAM_FILE).
 */
async function dropTail(streamFile: string, offset: number): Promise<void> {
  try {
    if (offset === 0) await rm(streamFile, { force: true })
    else await truncate(streamFile, offset)
  } catch {
    // Completion or abort removes it anyway.
  }
}

/** `size` bytes of the file at `path` from `start` (Infinity: to its end). */
interface Segment {
  path: string
  start: number
  size: number
}

/** True when the parts all sit in the stream file, one after the other from its start. */
function isWholeStream(files: readonly Segment[], streamFile: string): boolean {
  let end = 0
  for (const file of files) {
    if (file.path !== streamFile || file.start !== end) return false
    end += file.size
  }
  return files.length > 0
}

/**
 * Where part `partNumber` would start in the upload's stream file, when parts 1 .. n - 1
 * sit there one after the other (per the markers among `entries`) and no version of part
 * n does; otherwise null.
 */
function streamEnd(entries: readonly string[], partNumber: number): number | null {
  const markers = new Map<number, { start: number; size: number }>()
  for (const entry of entries) {
    const match = STREAM_MARKER.exec(entry)
    if (match) markers.set(Number(match[1]), { start: Number(match[3]), size: Number(match[4]) })
  }
  let end = 0
  for (let n = 1; n < partNumber; n++) {
    const marker = markers.get(n)
    if (marker === undefined || marker.start !== end) return null
    end += marker.size
  }
  return markers.has(partNumber) ? null : end
}

interface BatchOptions {
  /** Where in the file to write (the handle's own position when absent). */
  position?: number
  /** The chunks are ours: free each one once written (see `WritePartOptions`). */
  handOver?: boolean
}

/**
 * Writes the source in batches of about `WRITE_BATCH` bytes with one write in flight while
 * the next batch fills, so small network chunks do not cost a syscall each.
 */
async function writeBatched(
  handle: FileHandle,
  source: AsyncIterable<Uint8Array>,
  options: BatchOptions = {},
): Promise<void> {
  const { handOver = false } = options
  let position = options.position ?? null
  let batch: Uint8Array[] = []
  let batchBytes = 0
  let inFlight: Promise<unknown> | null = null
  const settle = async () => {
    const failure = await inFlight
    inFlight = null
    if (failure !== null) throw failure
  }
  try {
    for await (const chunk of source) {
      batch.push(chunk)
      batchBytes += chunk.length
      if (batchBytes >= WRITE_BATCH) {
        if (inFlight !== null) await settle()
        inFlight = writeBatch(handle, batch, handOver, position).then(
          () => null,
          (err: unknown) => err ?? new Error('write failed'),
        )
        if (position !== null) position += batchBytes
        batch = []
        batchBytes = 0
      }
    }
    if (inFlight !== null) await settle()
    if (batch.length > 0) await writeBatch(handle, batch, handOver, position)
  } finally {
    // Never leave a write running on a handle the caller is about to close.
    await inFlight
  }
}

async function writeBatch(
  handle: FileHandle,
  batch: Uint8Array[],
  handOver: boolean,
  position: number | null,
) {
  await writeAll(handle, batch, position)
  if (handOver) for (const chunk of batch) release(chunk)
}

/** Writes every buffer, at `position` (null: the handle's own position). */
async function writeAll(
  handle: FileHandle,
  buffers: Uint8Array[],
  position: number | null = null,
): Promise<void> {
  let pending = buffers
  let at = position
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, at ?? undefined)
    if (at !== null) at += bytesWritten
    let skip = bytesWritten
    const rest: Uint8Array[] = []
    for (const buffer of pending) {
      if (skip >= buffer.length) {
        skip -= buffer.length
      } else {
        rest.push(skip > 0 ? buffer.subarray(skip) : buffer)
        skip = 0
      }
    }
    pending = rest
  }
}

function partName(partNumber: number): string {
  return String(partNumber).padStart(5, '0')
}

function isInside(root: string, path: string): boolean {
  const rel = relative(root, path)
  return rel !== '' && !rel.startsWith('..')
}

function errno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function isMissing(err: unknown): boolean {
  const code = errno(err)
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function wrap(operation: string, err: unknown): StorageError {
  if (err instanceof StorageError) return err
  const code = errno(err)
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StorageFullError(operation, err)
  return new StorageBackendError(operation, err)
}
