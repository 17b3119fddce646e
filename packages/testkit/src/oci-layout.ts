import { createCipheriv, createHash, type Hash, randomBytes, randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import {
  OCI_EMPTY,
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
} from '@atcr/core/oci'
import tar, { type Header, type Pack } from 'tar-stream'

/** The annotation that names a manifest in a layout's index.json (`oci:DIR:TAG`). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'

export interface Platform {
  architecture: string
  os: string
  variant?: string
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  platform?: Platform
  annotations?: Record<string, string>
}

export interface LayerFile {
  /** Path inside the image, without a leading slash: `etc/motd`. */
  path: string
  type?: 'file' | 'directory' | 'symlink'
  content?: string | Uint8Array
  /** Target of a symlink. */
  linkTarget?: string
  mode?: number
}

interface LayerCommon {
  /** 'gzip' (default) or 'none' for a plain tar layer. */
  compression?: 'gzip' | 'none'
  /**
   * zlib level 0-9; default 6 for files, 0 for random bytes (incompressible anyway:
   * level 0 still writes valid gzip, about five times faster than level 1).
   */
  gzipLevel?: number
  /** The `created_by` of this layer's history entry. */
  createdBy?: string
}

export interface FilesLayer extends LayerCommon {
  files: LayerFile[]
}

/** One file of `randomBytes` bytes, streamed to disk (never held in memory). */
export interface RandomLayer extends LayerCommon {
  randomBytes: number
  /** Path of the file in the layer (default `random.bin`). */
  path?: string
  /** Same seed, same bytes (and digests); without a seed, fresh bytes every time. */
  seed?: string
}

export type LayerSpec = FilesLayer | RandomLayer

/** The `config` object of an image config (what a container runs with). */
export interface ContainerConfig {
  User?: string
  Env?: string[]
  Entrypoint?: string[]
  Cmd?: string[]
  WorkingDir?: string
  Labels?: Record<string, string>
}

export interface ImageSpec {
  /** Default: one layer holding `hello.txt`. */
  layers?: LayerSpec[]
  /** Default linux/amd64. */
  platform?: Platform
  config?: ContainerConfig
  /** Image creation time; default the Unix epoch, so that digests are reproducible. */
  created?: string
  /** Manifest annotations. */
  annotations?: Record<string, string>
  /** Makes this image a referrer of another manifest. */
  subject?: Descriptor
  /** Adds the manifest to index.json under this ref name. */
  tag?: string
}

export interface LayerInfo extends Descriptor {
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  diffId: string
  uncompressedSize: number
}

export interface BuiltImage {
  /** The manifest's descriptor, with the image's platform. */
  manifest: Descriptor
  config: Descriptor
  layers: LayerInfo[]
  platform: Platform
}

export interface IndexSpec {
  /** Images (their platform goes into the index) or plain descriptors. */
  manifests: (BuiltImage | Descriptor)[]
  annotations?: Record<string, string>
  artifactType?: string
  subject?: Descriptor
  tag?: string
}

export interface BuiltIndex {
  index: Descriptor
  manifests: Descriptor[]
}

export interface ArtifactBlob {
  mediaType: string
  content: string | Uint8Array
  annotations?: Record<string, string>
}

export interface ArtifactSpec {
  artifactType: string
  /** The blobs of the artifact; with none, the manifest lists the empty descriptor. */
  blobs?: ArtifactBlob[]
  /** The manifest this artifact refers to (signature, SBOM, attestation...). */
  subject?: Descriptor
  annotations?: Record<string, string>
  tag?: string
}

export interface BuiltArtifact {
  manifest: Descriptor
  /** The empty config `{}` (application/vnd.oci.empty.v1+json). */
  config: Descriptor
  blobs: Descriptor[]
}

export interface IndexJson {
  schemaVersion: 2
  mediaType: string
  manifests: Descriptor[]
}

export interface OciLayout {
  dir: string
  /** Where a blob lives: `DIR/blobs/sha256/<hex>`. */
  blobPath(digest: string): string
  writeBlob(mediaType: string, content: string | Uint8Array): Promise<Descriptor>
  addImage(spec?: ImageSpec): Promise<BuiltImage>
  /** A multi-platform image index over images already added. */
  addIndex(spec: IndexSpec): Promise<BuiltIndex>
  /** An OCI 1.1 artifact: artifactType, empty config, optional subject. */
  addArtifact(spec: ArtifactSpec): Promise<BuiltArtifact>
  /** Names a manifest or index in index.json (replacing what the name pointed to). */
  tag(name: string, descriptor: Descriptor): Promise<void>
  /** The current index.json. */
  index(): IndexJson
}

export interface OciLayoutOptions {
  /** Modification time of every tar entry; default the Unix epoch. */
  mtime?: Date
}

const EPOCH = new Date(0)
const RANDOM_CHUNK = 1024 * 1024
const ZEROS = Buffer.alloc(RANDOM_CHUNK)

const sha256 = (data: string | Uint8Array) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`

/** A transform step for stream.pipeline that hashes and counts what passes through. */
function measure(hash: Hash, counter: { bytes: number }) {
  return async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) {
      hash.update(chunk)
      counter.bytes += chunk.length
      yield chunk
    }
  }
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}

/** A subject names its manifest by media type, digest and size only. */
function subjectOf(descriptor: Descriptor | undefined) {
  if (!descriptor) return undefined
  const { mediaType, digest, size } = descriptor
  return { mediaType, digest, size }
}

function descriptorOf(entry: BuiltImage | Descriptor): Descriptor {
  return 'manifest' in entry ? entry.manifest : entry
}

/** Bytes for a random layer: AES-256-CTR keystream when seeded, else the system CSPRNG. */
function randomChunks(size: number, seed: string | undefined): () => Buffer | null {
  const cipher =
    seed === undefined
      ? null
      : createCipheriv(
          'aes-256-ctr',
          createHash('sha256').update(`atcr-testkit:${seed}`).digest(),
          Buffer.alloc(16),
        )
  let left = size
  return () => {
    if (left === 0) return null
    const n = Math.min(left, RANDOM_CHUNK)
    left -= n
    return cipher ? cipher.update(ZEROS.subarray(0, n)) : randomBytes(n)
  }
}

type EntryHeader = Partial<Header> & Pick<Header, 'name'>

function entryDone(pack: Pack, header: EntryHeader, content?: string | Buffer) {
  return new Promise<void>((resolve, reject) => {
    const callback = (error?: Error | null) => (error ? reject(error) : resolve())
    if (content === undefined) pack.entry(header, callback)
    else pack.entry(header, content, callback)
  })
}

async function writeFilesToTar(pack: Pack, files: LayerFile[], mtime: Date) {
  const written = new Set<string>()
  const base = { mtime, uid: 0, gid: 0, uname: 'root', gname: 'root' }
  for (const file of files) {
    const path = file.path.replace(/^\/+/, '').replace(/\/+$/, '')
    // Parent directories first, as image builders write them.
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/')
      if (written.has(dir)) continue
      written.add(dir)
      await entryDone(pack, { ...base, name: dir, type: 'directory', mode: 0o755 })
    }
    written.add(path)
    const type = file.type ?? 'file'
    if (type === 'directory') {
      await entryDone(pack, { ...base, name: path, type, mode: file.mode ?? 0o755 })
    } else if (type === 'symlink') {
      await entryDone(pack, {
        ...base,
        name: path,
        type,
        linkname: file.linkTarget ?? '',
        mode: file.mode ?? 0o777,
      })
    } else {
      const content = Buffer.from(file.content ?? '')
      await entryDone(pack, { ...base, name: path, type, mode: file.mode ?? 0o644 }, content)
    }
  }
}

async function writeRandomToTar(pack: Pack, spec: RandomLayer, mtime: Date) {
  let finished: (error?: Error | null) => void = () => {}
  const done = new Promise<void>((resolve, reject) => {
    finished = (error) => (error ? reject(error) : resolve())
  })
  const entry = pack.entry(
    {
      name: spec.path ?? 'random.bin',
      size: spec.randomBytes,
      mode: 0o644,
      mtime,
      uid: 0,
      gid: 0,
      uname: 'root',
      gname: 'root',
    },
    finished,
  )
  const next = randomChunks(spec.randomBytes, spec.seed)
  for (let chunk = next(); chunk !== null; chunk = next()) {
    if (!entry.write(chunk)) await new Promise<void>((resolve) => entry.once('drain', resolve))
  }
  entry.end(undefined)
  await done
}

/** Writes a (gzip) tar layer to blobs/, streaming, hashing both forms on the way. */
async function writeLayer(
  layout: OciLayout,
  spec: LayerSpec,
  mtime: Date,
): Promise<Omit<LayerInfo, 'annotations'>> {
  const gzip = (spec.compression ?? 'gzip') === 'gzip'
  const level = spec.gzipLevel ?? ('randomBytes' in spec ? 0 : 6)
  const tmp = join(layout.dir, 'blobs', 'sha256', `.tmp-${randomUUID()}`)
  const diff = createHash('sha256')
  const blob = createHash('sha256')
  const raw = { bytes: 0 }
  const stored = { bytes: 0 }
  const pack = tar.pack()
  const tarBytes = pack as AsyncIterable<Buffer>
  const written = gzip
    ? pipeline(
        tarBytes,
        measure(diff, raw),
        createGzip({ level }),
        measure(blob, stored),
        createWriteStream(tmp),
      )
    : pipeline(tarBytes, measure(diff, raw), measure(blob, stored), createWriteStream(tmp))
  const entries = async () => {
    if ('randomBytes' in spec) await writeRandomToTar(pack, spec, mtime)
    else await writeFilesToTar(pack, spec.files, mtime)
    pack.finalize()
  }
  try {
    // Together: if the pipeline fails, a writer waiting for 'drain' must not hold us up.
    await Promise.all([entries(), written])
  } catch (error) {
    pack.destroy(error as Error)
    await written.catch(() => {})
    await rm(tmp, { force: true })
    throw error
  }
  const digest = `sha256:${blob.digest('hex')}`
  await rename(tmp, layout.blobPath(digest))
  return {
    mediaType: gzip ? OCI_LAYER_TAR_GZIP : OCI_LAYER_TAR,
    digest,
    size: stored.bytes,
    diffId: `sha256:${diff.digest('hex')}`,
    uncompressedSize: raw.bytes,
  }
}

/**
 * Creates (or opens and extends) an OCI image layout in `dir` (image-spec
 * image-layout.md): `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Everything it
 * writes is reproducible: the same calls give the same digests.
 */
export async function createOciLayout(
  dir: string,
  options: OciLayoutOptions = {},
): Promise<OciLayout> {
  const mtime = options.mtime ?? EPOCH
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  let index: IndexJson = { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests: [] }
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexJson
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const saveIndex = () => writeFile(join(dir, 'index.json'), JSON.stringify(index))
  await saveIndex()

  const layout: OciLayout = {
    dir,
    blobPath: (digest) => {
      const match = /^sha256:([0-9a-f]{64})$/.exec(digest)
      if (!match) throw new Error(`not a sha256 digest: ${digest}`)
      return join(dir, 'blobs', 'sha256', match[1]!)
    },

    async writeBlob(mediaType, content) {
      const bytes = typeof content === 'string' ? Buffer.from(content) : content
      const digest = sha256(bytes)
      await writeFile(layout.blobPath(digest), bytes)
      return { mediaType, digest, size: bytes.byteLength }
    },

    async addImage(spec = {}) {
      const platform = spec.platform ?? { architecture: 'amd64', os: 'linux' }
      const created = spec.created ?? EPOCH.toISOString()
      const layerSpecs = spec.layers ?? [{ files: [{ path: 'hello.txt', content: 'hello\n' }] }]
      const layers: LayerInfo[] = []
      for (const layerSpec of layerSpecs) layers.push(await writeLayer(layout, layerSpec, mtime))
      const config = await layout.writeBlob(
        OCI_IMAGE_CONFIG,
        JSON.stringify(
          withoutUndefined({
            created,
            architecture: platform.architecture,
            os: platform.os,
            variant: platform.variant,
            config: spec.config ?? {},
            rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
            history: layerSpecs.map((layerSpec, i) => ({
              created,
              created_by: layerSpec.createdBy ?? `atcr testkit: layer ${i + 1}`,
            })),
          }),
        ),
      )
      const manifest = await layout.writeBlob(
        OCI_IMAGE_MANIFEST,
        JSON.stringify(
          withoutUndefined({
            schemaVersion: 2,
            mediaType: OCI_IMAGE_MANIFEST,
            config,
            layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
            subject: subjectOf(spec.subject),
            annotations: spec.annotations,
          }),
        ),
      )
      const built = { manifest: { ...manifest, platform }, config, layers, platform }
      if (spec.tag !== undefined) await layout.tag(spec.tag, manifest)
      return built
    },

    async addIndex(spec) {
      const manifests = spec.manifests.map(descriptorOf)
      const index = await layout.writeBlob(
        OCI_IMAGE_INDEX,
        JSON.stringify(
          withoutUndefined({
            schemaVersion: 2,
            mediaType: OCI_IMAGE_INDEX,
            artifactType: spec.artifactType,
            manifests,
            subject: subjectOf(spec.subject),
            annotations: spec.annotations,
          }),
        ),
      )
      if (spec.tag !== undefined) await layout.tag(spec.tag, index)
      return { index, manifests }
    },

    async addArtifact(spec) {
      const config = await layout.writeBlob(OCI_EMPTY, '{}')
      const blobs: Descriptor[] = []
      for (const blob of spec.blobs ?? []) {
        const written = await layout.writeBlob(blob.mediaType, blob.content)
        blobs.push(withoutUndefined({ ...written, annotations: blob.annotations }))
      }
      const emptyData = { ...config, data: Buffer.from('{}').toString('base64') }
      const manifest = await layout.writeBlob(
        OCI_IMAGE_MANIFEST,
        JSON.stringify(
          withoutUndefined({
            schemaVersion: 2,
            mediaType: OCI_IMAGE_MANIFEST,
            artifactType: spec.artifactType,
            config: emptyData,
            layers: blobs.length > 0 ? blobs : [emptyData],
            subject: subjectOf(spec.subject),
            annotations: spec.annotations,
          }),
        ),
      )
      const described = { ...manifest, artifactType: spec.artifactType }
      if (spec.tag !== undefined) await layout.tag(spec.tag, described)
      return { manifest: described, config, blobs }
    },

    async tag(name, descriptor) {
      const { mediaType, digest, size, artifactType } = descriptor
      const entry = withoutUndefined({
        mediaType,
        digest,
        size,
        artifactType,
        annotations: { ...descriptor.annotations, [REF_NAME_ANNOTATION]: name },
      })
      index = {
        ...index,
        manifests: [
          ...index.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== name),
          entry,
        ],
      }
      await saveIndex()
    },

    index: () => index,
  }
  return layout
}

/** One image in a new or existing layout, tagged `tag`, in one call. */
export async function writeOciImage(
  dir: string,
  spec: ImageSpec & { tag: string },
  options?: OciLayoutOptions,
): Promise<BuiltImage> {
  return (await createOciLayout(dir, options)).addImage(spec)
}
