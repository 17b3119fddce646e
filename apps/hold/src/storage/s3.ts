import { randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { ByteCounter, fixedChunks } from './bytes.ts'
import type {
  ByteRange,
  ByteSource,
  CompleteMultipartResult,
  ObjectInfo,
  ObjectStat,
  PartRef,
  PresignedRequest,
  PresignOptions,
  StorageDriver,
  UploadedPart,
  WritePartOptions,
  WriteResult,
} from './driver.ts'
import {
  InvalidPartError,
  InvalidPathError,
  InvalidRangeError,
  PartTooSmallError,
  PathNotFoundError,
  StorageBackendError,
  StorageError,
  StorageFullError,
  UploadNotFoundError,
} from './errors.ts'
import {
  MAX_PART_NUMBER,
  MAX_PART_SIZE,
  MIN_PART_SIZE,
  normalizeRange,
  presignTtl,
  validateDeclaredSize,
  validatePartList,
  validatePartNumber,
  validatePath,
  validatePrefix,
} from './validate.ts'

export interface S3DriverConfig {
  driver: 's3'
  bucket: string
  /** Default `us-east-1`. */
  region?: string
  /** The S3 API as the hold reaches it; omit for AWS itself. */
  endpoint?: string
  /**
   * The S3 API as clients reach it, used only to presign URLs (the hold may talk to S3 on
   * an internal address). Default: `endpoint`.
   */
  publicEndpoint?: string
  /** Path-style URLs (`endpoint/bucket/key`), needed by most non-AWS servers. */
  forcePathStyle?: boolean
  /** Omit to use the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  /** Keys are `<prefix>/<path>`, so several holds (or other data) can share a bucket. */
  prefix?: string
  /** Default lifetime of presigned URLs in seconds. Default 900. */
  presignTtl?: number
  /** Part size when `write` streams a large body as a multipart upload. Default 8 MiB. */
  partSize?: number
  /** Parts in flight per `write` or multipart copy. Default 4. */
  concurrency?: number
  /** Objects larger than this are moved with UploadPartCopy. Default (and maximum) 5 GiB. */
  multipartCopyThreshold?: number
  /** Part size of a multipart copy (raised if needed to fit 10,000 parts). Default 1 GiB. */
  copyPartSize?: number
  /** Where `writePart` stages a body of unknown size too big for memory. Default: OS temp. */
  spoolDir?: string
  /** Receives the SDK's own warnings; silent by default (failures surface as errors). */
  logger?: SdkLogger
  /** A connection not made within this long fails. Default 5 s. */
  connectTimeoutMs?: number
  /** A request whose socket stays idle this long fails. Default 60 s. */
  requestTimeoutMs?: number
}

export interface SdkLogger {
  debug(...content: unknown[]): void
  info(...content: unknown[]): void
  warn(...content: unknown[]): void
  error(...content: unknown[]): void
}

const silent: SdkLogger = { debug() {}, info() {}, warn() {}, error() {} }

const DEFAULT_PART_SIZE = 8 * 1024 * 1024
const DEFAULT_CONCURRENCY = 4
const MAX_COPY_OBJECT_SIZE = 5 * 1024 * 1024 * 1024
const DEFAULT_COPY_PART_SIZE = 1024 * 1024 * 1024
const DELETE_BATCH = 1000

/**
 * Objects as S3 keys `<prefix>/<path>`. Large writes become multipart uploads with
 * `concurrency` parts of `partSize` in flight (memory stays about `(concurrency + 1) *
 * partSize`). A multipart upload id carries the target path and S3's UploadId, since S3
 * keeps the parts itself, it stays valid across restarts. Presigned URLs are signed for
 * `publicEndpoint`.
 */
export function createS3Driver(config: S3DriverConfig): StorageDriver {
  return new S3Driver(config)
}

class S3Driver implements StorageDriver {
  readonly kind = 's3' as const
  readonly #client: S3Client
  readonly #presigner: S3Client
  readonly #bucket: string
  readonly #prefix: string
  readonly #presignTtl: number
  readonly #partSize: number
  readonly #concurrency: number
  readonly #copyThreshold: number
  readonly #copyPartSize: number
  readonly #spoolDir: string

  constructor(config: S3DriverConfig) {
    if (!config.bucket) throw new TypeError('s3 storage needs a bucket')
    const prefix = validatePrefix(config.prefix ?? '')
    this.#bucket = config.bucket
    this.#prefix = prefix === '' ? '' : `${prefix}/`
    this.#presignTtl = presignTtl(config.presignTtl, 900)
    this.#partSize = config.partSize ?? DEFAULT_PART_SIZE
    if (this.#partSize < MIN_PART_SIZE || this.#partSize > MAX_PART_SIZE) {
      throw new RangeError(`s3 partSize must be from ${MIN_PART_SIZE} to ${MAX_PART_SIZE} bytes`)
    }
    this.#concurrency = Math.max(1, Math.floor(config.concurrency ?? DEFAULT_CONCURRENCY))
    this.#copyThreshold = Math.min(
      config.multipartCopyThreshold ?? MAX_COPY_OBJECT_SIZE,
      MAX_COPY_OBJECT_SIZE,
    )
    this.#copyPartSize = config.copyPartSize ?? DEFAULT_COPY_PART_SIZE
    if (this.#copyPartSize < MIN_PART_SIZE || this.#copyPartSize > MAX_PART_SIZE) {
      throw new RangeError(`s3 copyPartSize must be from ${MIN_PART_SIZE} to ${MAX_PART_SIZE}`)
    }
    this.#spoolDir = config.spoolDir ?? tmpdir()
    const base: S3ClientConfig = {
      region: config.region ?? 'us-east-1',
      forcePathStyle: config.forcePathStyle ?? false,
      // Checksums only where S3 demands them: the default (CRC32 on every upload) sends
      // streamed bodies aws-chunked with trailers, which many S3-compatible servers refuse,
      // and would put checksum parameters into presigned part URLs that clients cannot meet.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      logger: config.logger ?? silent,
      // Without timeouts a stalled S3 holds a request, and the client behind it, forever.
      requestHandler: {
        connectionTimeout: config.connectTimeoutMs ?? 5_000,
        requestTimeout: config.requestTimeoutMs ?? 60_000,
      },
      ...(config.credentials ? { credentials: config.credentials } : {}),
    }
    this.#client = new S3Client({
      ...base,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    })
    const publicEndpoint = config.publicEndpoint ?? config.endpoint
    this.#presigner = new S3Client({
      ...base,
      ...(publicEndpoint ? { endpoint: publicEndpoint } : {}),
    })
  }

  async stat(path: string): Promise<ObjectStat | null> {
    const Key = this.#key(path)
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key }))
      return { size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) }
    } catch (err) {
      if (isNotFound(err)) return null
      throw wrap('stat', err)
    }
  }

  async read(path: string, range?: ByteRange): Promise<Readable> {
    const Key = this.#key(path)
    const wanted = normalizeRange(path, range)
    const Range =
      wanted === null
        ? undefined
        : `bytes=${wanted.start}-${wanted.end === undefined ? '' : wanted.end - 1}`
    try {
      const object = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key, Range }),
      )
      if (!(object.Body instanceof Readable)) {
        throw new StorageBackendError('read', new Error('response body is not a Node stream'))
      }
      return object.Body
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path)
      if (errorCode(err) === 'InvalidRange' || httpStatus(err) === 416) {
        const size = (await this.stat(path))?.size
        if (size === undefined) throw new PathNotFoundError(path)
        throw new InvalidRangeError(
          path,
          `start ${wanted?.start} is not before the size ${size}`,
          size,
        )
      }
      throw wrap('read', err)
    }
  }

  async write(path: string, source: ByteSource): Promise<WriteResult> {
    const Key = this.#key(path)
    const counter = new ByteCounter('object', this.#partSize * MAX_PART_NUMBER)
    const parts = fixedChunks(counter.through(source), this.#partSize)
    try {
      // Up to two parts decide between one PutObject and a multipart upload.
      const head = await take(parts, 2)
      if (head.length < 2) {
        const Body = head[0] ?? Buffer.alloc(0)
        await this.#client.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body }))
        return { size: counter.total }
      }
      const { UploadId } = await this.#client.send(
        new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key }),
      )
      if (!UploadId) throw new StorageBackendError('write', new Error('no UploadId returned'))
      try {
        const bodies = prepend(head, parts)
        const completed = await this.#pool(bodies, (Body, PartNumber) =>
          this.#client
            .send(
              new UploadPartCommand({
                Bucket: this.#bucket,
                Key,
                UploadId,
                PartNumber,
                Body,
                ContentLength: Body.length,
              }),
            )
            .then((result) => result.ETag),
        )
        await this.#complete(Key, UploadId, completed)
      } catch (err) {
        await this.#abortQuietly(Key, UploadId)
        throw err
      }
      return { size: counter.total }
    } catch (err) {
      await parts.return(undefined)
      throw counter.blame(wrap('write', err))
    }
  }

  async delete(path: string): Promise<void> {
    const Key = this.#key(path)
    try {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key }))
    } catch (err) {
      if (!isNotFound(err)) throw wrap('delete', err)
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    const folder = validatePrefix(prefix)
    if (folder === '') throw new InvalidPathError(prefix, 'deletePrefix needs a non-empty prefix')
    let batch: { Key: string }[] = []
    const flush = async () => {
      const result = await this.#client.send(
        new DeleteObjectsCommand({
          Bucket: this.#bucket,
          Delete: { Objects: batch, Quiet: true },
        }),
      )
      const failed = result.Errors?.[0]
      if (failed) {
        throw new StorageBackendError(
          'deletePrefix',
          new Error(`${failed.Code ?? 'error'} deleting ${failed.Key}: ${failed.Message ?? ''}`),
        )
      }
      batch = []
    }
    try {
      for await (const key of this.#keys(`${this.#prefix}${folder}/`)) {
        batch.push({ Key: key })
        if (batch.length === DELETE_BATCH) await flush()
      }
      if (batch.length > 0) await flush()
    } catch (err) {
      throw wrap('deletePrefix', err)
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const folder = validatePrefix(prefix)
    const keyPrefix = `${this.#prefix}${folder === '' ? '' : `${folder}/`}`
    let ContinuationToken: string | undefined
    do {
      let page: ListObjectsV2CommandOutput
      try {
        page = await this.#listPage(keyPrefix, ContinuationToken)
      } catch (err) {
        throw wrap('list', err)
      }
      for (const object of page.Contents ?? []) {
        const path = object.Key?.slice(this.#prefix.length)
        // Keys the driver could not have written (folder markers, foreign names) are skipped.
        if (path === undefined || !isStoragePath(path)) continue
        yield { path, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) }
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)
  }

  #listPage(Prefix: string, ContinuationToken: string | undefined) {
    return this.#client.send(
      new ListObjectsV2Command({ Bucket: this.#bucket, Prefix, ContinuationToken }),
    )
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.#key(from)
    const target = this.#key(to)
    try {
      let head: HeadObjectCommandOutput
      try {
        head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key: source }))
      } catch (err) {
        if (isNotFound(err)) throw new PathNotFoundError(from)
        throw err
      }
      if (source === target) return
      const size = head.ContentLength ?? 0
      const CopySource = `${this.#bucket}/${source}`
      if (size <= this.#copyThreshold) {
        try {
          await this.#client.send(
            new CopyObjectCommand({ Bucket: this.#bucket, Key: target, CopySource }),
          )
        } catch (err) {
          if (isNotFound(err)) throw new PathNotFoundError(from)
          throw err
        }
      } else {
        await this.#multipartCopy(CopySource, head.ETag, size, target)
      }
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.#bucket, Key: source }))
    } catch (err) {
      throw wrap('move', err)
    }
  }

  async createMultipart(path: string): Promise<string> {
    const Key = this.#key(path)
    try {
      const { UploadId } = await this.#client.send(
        new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key }),
      )
      if (!UploadId) throw new Error('no UploadId returned')
      return encodeUploadId(path, UploadId)
    } catch (err) {
      throw wrap('createMultipart', err)
    }
  }

  async writePart(
    uploadId: string,
    partNumber: number,
    source: ByteSource,
    // `handOver` is not used: the SDK may still be sending a chunk when it asks for the next.
    options?: WritePartOptions,
  ): Promise<UploadedPart> {
    const { Key, UploadId } = this.#upload(uploadId)
    validatePartNumber(partNumber)
    validateDeclaredSize(options?.size, MAX_PART_SIZE)
    const counter = new ByteCounter('part', MAX_PART_SIZE, options?.size)
    // S3 needs each part's length up front: stream straight through when the caller knows
    // it, otherwise stage the part (in memory up to one partSize, beyond that on disk).
    // The SDK pipes a stream body into the request, which a failing body would leave
    // waiting for bytes that never come: abort the request instead.
    const abort = new AbortController()
    let bodyFailure: unknown
    let readFailure: unknown
    const checked = async function* () {
      try {
        yield* counter.through(source)
      } catch (err) {
        bodyFailure = err
        abort.abort(err)
        throw err
      }
    }
    let staged: StagedBody | undefined
    try {
      staged =
        options?.size === undefined
          ? await stage(checked(), this.#partSize, this.#spoolDir)
          : {
              body: () => Readable.from(checked(), { objectMode: false }),
              size: options.size,
              release: async () => {},
            }
      const Body = staged.body()
      if (Body instanceof Readable) {
        // `pipe` leaves a failing body's error unhandled: take it here, stop the request.
        Body.on('error', (err) => {
          readFailure ??= err
          abort.abort(err)
        })
      }
      const result = await this.#client.send(
        new UploadPartCommand({
          Bucket: this.#bucket,
          Key,
          UploadId,
          PartNumber: partNumber,
          Body,
          ContentLength: staged.size,
        }),
        { abortSignal: abort.signal },
      )
      if (!result.ETag) throw new Error('no ETag returned')
      return { partNumber, etag: result.ETag, size: staged.size }
    } catch (err) {
      if (bodyFailure !== undefined) throw bodyFailure
      if (readFailure !== undefined) throw wrap('writePart', readFailure)
      if (isNotFound(err)) throw new UploadNotFoundError(uploadId)
      throw wrap('writePart', err)
    } finally {
      await staged?.release()
    }
  }

  async presignPart(
    uploadId: string,
    partNumber: number,
    options?: PresignOptions,
  ): Promise<PresignedRequest> {
    const { Key, UploadId } = this.#upload(uploadId)
    validatePartNumber(partNumber)
    const expiresIn = presignTtl(options?.ttl, this.#presignTtl)
    const command = new UploadPartCommand({
      Bucket: this.#bucket,
      Key,
      UploadId,
      PartNumber: partNumber,
    })
    try {
      const url = await getSignedUrl(this.#presigner, command, { expiresIn })
      return { url, method: 'PUT', headers: {}, expiresAt: new Date(Date.now() + expiresIn * 1000) }
    } catch (err) {
      throw wrap('presignPart', err)
    }
  }

  /**
   * S3 assembles the parts server-side: no byte passes through the hold, so `onData` is
   * ignored (`observed` stays unset) and a caller that needs the bytes reads the object back.
   */
  async completeMultipart(
    uploadId: string,
    parts: readonly PartRef[],
  ): Promise<CompleteMultipartResult> {
    const { Key, UploadId } = this.#upload(uploadId)
    validatePartList(parts)
    try {
      await this.#complete(
        Key,
        UploadId,
        parts.map((part) => part.etag),
        parts.map((part) => part.partNumber),
      )
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.#bucket, Key }))
      return { size: head.ContentLength ?? 0 }
    } catch (err) {
      if (isNotFound(err)) throw new UploadNotFoundError(uploadId)
      throw wrap('completeMultipart', err)
    }
  }

  async abortMultipart(uploadId: string): Promise<void> {
    let upload: { Key: string; UploadId: string }
    try {
      upload = this.#upload(uploadId)
    } catch {
      return
    }
    try {
      await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, ...upload }))
    } catch (err) {
      if (!isNotFound(err)) throw wrap('abortMultipart', err)
    }
  }

  /** A bucket has no free space to speak of: only the server's own limits apply. */
  async freeSpace(): Promise<null> {
    return null
  }

  async presignGet(path: string, options?: PresignOptions): Promise<string> {
    const Key = this.#key(path)
    const expiresIn = presignTtl(options?.ttl, this.#presignTtl)
    try {
      return await getSignedUrl(
        this.#presigner,
        new GetObjectCommand({ Bucket: this.#bucket, Key }),
        { expiresIn },
      )
    } catch (err) {
      throw wrap('presignGet', err)
    }
  }

  async close(): Promise<void> {
    this.#client.destroy()
    this.#presigner.destroy()
  }

  #key(path: string): string {
    return `${this.#prefix}${validatePath(path)}`
  }

  #upload(uploadId: string): { Key: string; UploadId: string } {
    const decoded = decodeUploadId(uploadId)
    if (decoded === null) throw new UploadNotFoundError(uploadId)
    return { Key: this.#key(decoded.path), UploadId: decoded.uploadId }
  }

  async *#keys(Prefix: string): AsyncGenerator<string> {
    let ContinuationToken: string | undefined
    do {
      const page = await this.#listPage(Prefix, ContinuationToken)
      for (const object of page.Contents ?? []) if (object.Key) yield object.Key
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)
  }

  async #complete(
    Key: string,
    UploadId: string,
    etags: readonly (string | undefined)[],
    partNumbers?: readonly number[],
  ): Promise<void> {
    try {
      await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key,
          UploadId,
          MultipartUpload: {
            Parts: etags.map((ETag, index) => ({
              PartNumber: partNumbers?.[index] ?? index + 1,
              ETag,
            })),
          },
        }),
      )
    } catch (err) {
      switch (errorCode(err)) {
        case 'InvalidPart':
          throw new InvalidPartError('not uploaded, or its etag does not match')
        case 'InvalidPartOrder':
          throw new InvalidPartError('parts must be listed in ascending order')
        case 'EntityTooSmall':
          throw new PartTooSmallError(MIN_PART_SIZE)
        default:
          throw err
      }
    }
  }

  async #multipartCopy(
    CopySource: string,
    etag: string | undefined,
    size: number,
    Key: string,
  ): Promise<void> {
    const partSize = Math.max(this.#copyPartSize, Math.ceil(size / MAX_PART_NUMBER))
    const { UploadId } = await this.#client.send(
      new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key }),
    )
    if (!UploadId) throw new Error('no UploadId returned')
    try {
      const etags = await this.#pool(byteRanges(size, partSize), async (range, PartNumber) => {
        const result = await this.#client.send(
          new UploadPartCopyCommand({
            Bucket: this.#bucket,
            Key,
            UploadId,
            PartNumber,
            CopySource,
            CopySourceRange: `bytes=${range.first}-${range.last}`,
            // A source replaced mid-copy must fail the copy, not splice two objects.
            CopySourceIfMatch: etag,
          }),
        )
        return result.CopyPartResult?.ETag
      })
      await this.#complete(Key, UploadId, etags)
    } catch (err) {
      await this.#abortQuietly(Key, UploadId)
      throw err
    }
  }

  /**
   * Runs `task` over the items with at most `concurrency` in flight, pulling the next item
   * only once a slot is free (so at most `concurrency + 1` items exist at once, counting
   * the one being produced); results come back in item order. Stops at the first failure.
   */
  async #pool<T, R>(
    items: AsyncIterable<T> | Iterable<T>,
    task: (item: T, partNumber: number) => Promise<R>,
  ): Promise<R[]> {
    const iterator: AsyncIterator<T> | Iterator<T> =
      Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]()
    const results: R[] = []
    const running = new Set<Promise<void>>()
    let failure: { error: unknown } | undefined
    let done = false
    try {
      for (let index = 0; ; index++) {
        while (running.size >= this.#concurrency && failure === undefined) {
          await Promise.race(running)
        }
        if (failure !== undefined) break
        const next = await iterator.next()
        if (next.done) {
          done = true
          break
        }
        const job: Promise<void> = task(next.value, index + 1).then(
          (result) => {
            results[index] = result
            running.delete(job)
          },
          (error: unknown) => {
            failure ??= { error }
            running.delete(job)
          },
        )
        running.add(job)
      }
    } finally {
      await Promise.all(running)
      if (!done) await iterator.return?.()
    }
    if (failure !== undefined) throw failure.error
    return results
  }

  async #abortQuietly(Key: string, UploadId: string): Promise<void> {
    try {
      await this.#client.send(
        new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key, UploadId }),
      )
    } catch {
      // The original error matters more; S3 lifecycle rules reap what is left.
    }
  }
}

interface StagedBody {
  body(): Readable | Buffer
  size: number
  release(): Promise<void>
}

/** Buffers a body of unknown length: in memory up to `memoryLimit`, then in a temp file. */
async function stage(
  source: AsyncIterable<Uint8Array>,
  memoryLimit: number,
  spoolDir: string,
): Promise<StagedBody> {
  const chunks: Uint8Array[] = []
  let size = 0
  const iterator = source[Symbol.asyncIterator]()
  for (;;) {
    const next = await iterator.next()
    if (next.done) {
      const buffer = Buffer.concat(chunks, size)
      return { body: () => buffer, size, release: async () => {} }
    }
    chunks.push(next.value)
    size += next.value.length
    if (size > memoryLimit) break
  }
  const dir = await mkdtemp(join(spoolDir, 'atcr-part-'))
  const file = join(dir, randomUUID())
  const release = () => rm(dir, { recursive: true, force: true })
  try {
    const handle = await open(file, 'wx')
    try {
      await handle.writev(chunks)
      chunks.length = 0
      for (;;) {
        const next = await iterator.next()
        if (next.done) break
        await handle.write(next.value)
        size += next.value.length
      }
    } finally {
      await handle.close()
    }
  } catch (err) {
    await release()
    throw err
  }
  return { body: () => createReadStream(file), size, release }
}

async function take<T>(items: AsyncIterator<T>, count: number): Promise<T[]> {
  const taken: T[] = []
  while (taken.length < count) {
    const next = await items.next()
    if (next.done) break
    taken.push(next.value)
  }
  return taken
}

/** Yields `head` (emptying it, so that sent parts can be freed), then `rest`. */
async function* prepend<T>(head: T[], rest: AsyncIterable<T>): AsyncGenerator<T> {
  for (let item = head.shift(); item !== undefined; item = head.shift()) yield item
  yield* rest
}

function* byteRanges(size: number, partSize: number): Generator<{ first: number; last: number }> {
  for (let first = 0; first < size; first += partSize) {
    yield { first, last: Math.min(first + partSize, size) - 1 }
  }
}

/**
 * `<base64url of JSON [path, UploadId]>`: both are needed to address the upload in S3,
 * and keeping them in the id means no local state has to survive a restart.
 */
function encodeUploadId(path: string, uploadId: string): string {
  return Buffer.from(JSON.stringify([path, uploadId])).toString('base64url')
}

function decodeUploadId(id: string): { path: string; uploadId: string } | null {
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]+$/.test(id)) return null
  try {
    const value: unknown = JSON.parse(Buffer.from(id, 'base64url').toString('utf8'))
    if (!Array.isArray(value) || value.length !== 2) return null
    const [path, uploadId] = value as unknown[]
    if (typeof path !== 'string' || typeof uploadId !== 'string' || uploadId === '') return null
    if (!isStoragePath(path)) return null
    return { path, uploadId }
  } catch {
    return null
  }
}

function isStoragePath(path: string): boolean {
  try {
    validatePath(path)
    return true
  } catch {
    return false
  }
}

function errorCode(err: unknown): string | undefined {
  const e = err as { name?: unknown; Code?: unknown } | null
  if (typeof e?.Code === 'string') return e.Code
  return typeof e?.name === 'string' ? e.name : undefined
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode
}

function isNotFound(err: unknown): boolean {
  const code = errorCode(err)
  return (
    code === 'NotFound' ||
    code === 'NoSuchKey' ||
    code === 'NoSuchUpload' ||
    (httpStatus(err) === 404 && code !== 'NoSuchBucket')
  )
}

function wrap(operation: string, err: unknown): StorageError {
  if (err instanceof StorageError) return err
  // S3 itself never fills up; self-hosted servers (MinIO, Garage) answer 507 when their
  // disks do. s3rver never does: this mapping is untested here.
  if (httpStatus(err) === 507 || errorCode(err) === 'XMinioStorageFull') {
    return new StorageFullError(operation, err)
  }
  return new StorageBackendError(operation, err)
}
