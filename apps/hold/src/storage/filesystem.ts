import { randomBytes, randomUUID } from 'node:crypto'
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
  unlink,
  utimes,
} from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { ByteCounter, release } from './bytes.ts'
import type {
  ByteRange,
  ByteSource,
  CompleteMultipartOptions,
  CompleteMultipartResult,
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
      if (wanted === null) {
        return handle.createReadStream({ highWaterMark: READ_HIGH_WATER_MARK })
      }
      const { first, last } = resolveRange(path, wanted, info.size)
      return handle.createReadStream({
        start: first,
        end: last,
        highWaterMark: READ_HIGH_WATER_MARK,
      })
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

  async presignPart(): Promise<PresignedRequest | null> {
    return null
  }

  async completeMultipart(
    uploadId: string,
    parts: readonly PartRef[],
    options?: CompleteMultipartOptions,
  ): Promise<CompleteMultipartResult> {
    validatePartList(parts)
    const onData = options?.onData
    const dir = this.#uploadDir(uploadId)
    const path = await this.#uploadTarget(uploadId)
    const file = this.#file(path)
    const files: { path: string; size: number }[] = []
    for (const part of parts) {
      const etag = bareEtag(part.etag)
      const unknown = new InvalidPartError(
        'not uploaded, or its etag does not match',
        part.partNumber,
      )
      if (!PART_TAG.test(etag)) throw unknown
      const partFile = join(dir, `${partName(part.partNumber)}.${etag}`)
      let size: number
      try {
        size = (await stat(partFile)).size
      } catch (err) {
        if (isMissing(err)) throw unknown
        throw wrap('completeMultipart', err)
      }
      files.push({ path: partFile, size })
    }
    // Sizes only once every part is known to exist, as S3 orders its checks.
    for (const [index, file] of files.entries()) {
      if (index < files.length - 1 && file.size < MIN_PART_SIZE) {
        throw new PartTooSmallError(MIN_PART_SIZE, parts[index]?.partNumber, file.size)
      }
    }
    const [first] = files
    let assembled =
      files.length === 1 && first
        ? await this.#linkTemp(first.path, parts[0]?.partNumber, onData)
        : null
    assembled ??= await this.#concatTemp(
      files.map((f) => f.path),
      onData,
    )
    try {
      await this.#commit(assembled.temp, file, path)
    } catch (err) {
      await rm(assembled.temp, { force: true })
      throw wrap('completeMultipart', err)
    }
    await this.abortMultipart(uploadId)
    return onData ? { size: assembled.size, observed: true } : { size: assembled.size }
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
    files: readonly string[],
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
      const size = onData ? await copyFiles([temp], null, onData) : (await stat(temp)).size
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
  files: readonly string[],
  out: FileHandle | null,
  onData: OnData | undefined,
): Promise<number> {
  const buffer = Buffer.allocUnsafeSlow(COPY_BUFFER)
  let total = 0
  for (const file of files) {
    const input = await open(file, 'r')
    try {
      for (;;) {
        const { bytesRead } = await input.read(buffer, 0, buffer.length, null)
        if (bytesRead === 0) break
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

interface BatchOptions {
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
        inFlight = writeBatch(handle, batch, handOver).then(
          () => null,
          (err: unknown) => err ?? new Error('write failed'),
        )
        batch = []
        batchBytes = 0
      }
    }
    if (inFlight !== null) await settle()
    if (batch.length > 0) await writeBatch(handle, batch, handOver)
  } finally {
    // Never leave a write running on a handle the caller is about to close.
    await inFlight
  }
}

async function writeBatch(handle: FileHandle, batch: Uint8Array[], handOver: boolean) {
  await writeAll(handle, batch)
  if (handOver) for (const chunk of batch) release(chunk)
}

async function writeAll(handle: FileHandle, buffers: Uint8Array[]): Promise<void> {
  let pending = buffers
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending)
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
