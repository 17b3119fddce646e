import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { createGunzip } from 'node:zlib'
import {
  type BuiltImage,
  createOciLayout,
  type ImageSpec,
  type IndexJson,
  type OciLayout,
  REF_NAME_ANNOTATION,
  writeOciImage,
} from '../src/index.ts'

const run = promisify(execFile)

async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', args, { maxBuffer: 16 * 1024 * 1024 })
  return stdout
}

async function skopeoJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await skopeo(...args)) as T
}

async function copy(from: string, to: string, ...flags: string[]) {
  await skopeo('copy', '--insecure-policy', '--quiet', ...flags, from, to)
}

async function readIndexJson(dir: string): Promise<IndexJson> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as IndexJson
}

function tagged(index: IndexJson, tag: string) {
  return index.manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag)
}

async function fileDigest(path: string, gunzip = false): Promise<string> {
  const hash = createHash('sha256')
  const input = createReadStream(path)
  await (gunzip ? pipeline(input, createGunzip(), hash) : pipeline(input, hash))
  return `sha256:${hash.digest('hex')}`
}

const TWO_LAYERS: ImageSpec = {
  layers: [
    {
      files: [
        { path: 'etc/motd', content: 'welcome to atcr\n' },
        { path: 'bin/busybox', content: new Uint8Array([0x7f, 0x45, 0x4c, 0x46]), mode: 0o755 },
        { path: 'bin/sh', type: 'symlink', linkTarget: 'busybox' },
      ],
      createdBy: 'COPY rootfs /',
    },
    { files: [{ path: 'app/config/settings.json', content: '{"debug":false}' }] },
  ],
  config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'], Labels: { team: 'atcr' } },
  annotations: { 'org.opencontainers.image.title': 'two layers' },
}

describe('OCI image layout builder', () => {
  let root: string
  let count = 0
  const freshDir = () => join(root, `layout-${++count}`)

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'atcr-oci-'))
  })
  after(() => rm(root, { recursive: true, force: true }))

  describe('a two-layer image', () => {
    let dir: string
    let image: BuiltImage

    before(async () => {
      dir = freshDir()
      image = await writeOciImage(dir, { ...TWO_LAYERS, tag: 'v1' })
    })

    it('is what skopeo inspect sees: digest, layers, platform, config', async () => {
      const seen = await skopeoJson<{
        Digest: string
        Layers: string[]
        Architecture: string
        Os: string
        Labels: Record<string, string>
      }>('inspect', `oci:${dir}:v1`)
      assert.equal(seen.Digest, image.manifest.digest)
      assert.deepEqual(
        seen.Layers,
        image.layers.map((layer) => layer.digest),
      )
      assert.equal(seen.Architecture, 'amd64')
      assert.equal(seen.Os, 'linux')
      assert.deepEqual(seen.Labels, { team: 'atcr' })

      const config = await skopeoJson<{
        rootfs: { diff_ids: string[] }
        config: { Cmd: string[] }
        history: { created_by: string }[]
      }>('inspect', '--config', `oci:${dir}:v1`)
      assert.deepEqual(
        config.rootfs.diff_ids,
        image.layers.map((layer) => layer.diffId),
      )
      assert.deepEqual(config.config.Cmd, ['/bin/sh'])
      assert.equal(config.history[0]?.created_by, 'COPY rootfs /')

      const raw = await skopeo('inspect', '--raw', `oci:${dir}:v1`)
      const manifest = JSON.parse(raw) as { annotations: Record<string, string> }
      assert.equal(manifest.annotations['org.opencontainers.image.title'], 'two layers')
      assert.equal(
        `sha256:${createHash('sha256').update(raw).digest('hex')}`,
        image.manifest.digest,
      )
    })

    it('stores every blob under its digest, and diff_ids hash the uncompressed tars', async () => {
      const layout = await createOciLayout(dir)
      for (const blob of [image.manifest, image.config, ...image.layers]) {
        const path = layout.blobPath(blob.digest)
        assert.equal((await stat(path)).size, blob.size)
        assert.equal(await fileDigest(path), blob.digest)
      }
      for (const layer of image.layers) {
        assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip')
        assert.equal(await fileDigest(layout.blobPath(layer.digest), true), layer.diffId)
      }
    })

    it('has layers that tar extracts into the given files', async () => {
      const out = join(root, 'extracted')
      await mkdir(out)
      const layout = await createOciLayout(dir)
      for (const layer of image.layers) {
        await run('tar', ['-xzf', layout.blobPath(layer.digest), '-C', out])
      }
      assert.equal(await readFile(join(out, 'etc/motd'), 'utf8'), 'welcome to atcr\n')
      assert.equal(await readFile(join(out, 'bin/sh'), 'latin1'), '\x7fELF')
      assert.equal((await stat(join(out, 'bin/busybox'))).mode & 0o777, 0o755)
      assert.equal(await readFile(join(out, 'app/config/settings.json'), 'utf8'), '{"debug":false}')
    })

    it('survives skopeo copy to another layout with the same manifest digest', async () => {
      const other = freshDir()
      await copy(`oci:${dir}:v1`, `oci:${other}:v1`)
      assert.equal(tagged(await readIndexJson(other), 'v1')?.digest, image.manifest.digest)
      const copied = await skopeoJson<{ Layers: string[] }>('inspect', `oci:${other}:v1`)
      assert.deepEqual(
        copied.Layers,
        image.layers.map((layer) => layer.digest),
      )
    })
  })

  it('builds a multi-arch index that skopeo copies with --all', async () => {
    const dir = freshDir()
    const layout = await createOciLayout(dir)
    const amd64 = await layout.addImage({
      layers: [{ files: [{ path: 'arch', content: 'amd64' }] }],
    })
    const arm64 = await layout.addImage({
      layers: [{ files: [{ path: 'arch', content: 'arm64' }] }],
      platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
    })
    const { index } = await layout.addIndex({
      manifests: [amd64, arm64],
      annotations: { 'org.opencontainers.image.version': '1.0' },
      tag: 'multi',
    })

    const raw = JSON.parse(await skopeo('inspect', '--raw', `oci:${dir}:multi`)) as {
      manifests: { digest: string; platform: { architecture: string; variant?: string } }[]
    }
    assert.deepEqual(
      raw.manifests.map((m) => [m.digest, m.platform.architecture, m.platform.variant]),
      [
        [amd64.manifest.digest, 'amd64', undefined],
        [arm64.manifest.digest, 'arm64', 'v8'],
      ],
    )
    // skopeo resolves the index to the arm64 image (while naming the index's digest).
    const forArm = await skopeoJson<{ Digest: string; Architecture: string; Layers: string[] }>(
      'inspect',
      '--override-arch',
      'arm64',
      '--override-variant',
      'v8',
      `oci:${dir}:multi`,
    )
    assert.equal(forArm.Digest, index.digest)
    assert.equal(forArm.Architecture, 'arm64')
    assert.deepEqual(
      forArm.Layers,
      arm64.layers.map((layer) => layer.digest),
    )

    const other = freshDir()
    await copy(`oci:${dir}:multi`, `oci:${other}:multi`, '--all')
    assert.equal(tagged(await readIndexJson(other), 'multi')?.digest, index.digest)
    const copied = await createOciLayout(other)
    for (const image of [amd64, arm64]) {
      for (const blob of [image.manifest, image.config, ...image.layers]) {
        assert.equal(await fileDigest(copied.blobPath(blob.digest)), blob.digest)
      }
    }
  })

  it('builds an artifact with an empty config and a subject, which skopeo copies', async () => {
    const dir = freshDir()
    const layout = await createOciLayout(dir)
    const image = await layout.addImage({ tag: 'v1' })
    const sbom = await layout.addArtifact({
      artifactType: 'application/vnd.example.sbom.v1+json',
      blobs: [{ mediaType: 'application/vnd.example.sbom.v1+json', content: '{"packages":[]}' }],
      subject: image.manifest,
      annotations: { 'org.opencontainers.image.created': '2025-01-01T00:00:00Z' },
      tag: 'sbom',
    })
    assert.equal(sbom.config.digest, `sha256:${createHash('sha256').update('{}').digest('hex')}`)
    assert.equal(sbom.config.size, 2)

    const raw = JSON.parse(await skopeo('inspect', '--raw', `oci:${dir}:sbom`)) as {
      artifactType: string
      config: { mediaType: string; digest: string }
      layers: { digest: string }[]
      subject: { digest: string; mediaType: string; size: number }
    }
    assert.equal(raw.artifactType, 'application/vnd.example.sbom.v1+json')
    assert.equal(raw.config.mediaType, 'application/vnd.oci.empty.v1+json')
    assert.equal(raw.layers[0]?.digest, sbom.blobs[0]?.digest)
    assert.deepEqual(raw.subject, {
      mediaType: image.manifest.mediaType,
      digest: image.manifest.digest,
      size: image.manifest.size,
    })

    const other = freshDir()
    await copy(`oci:${dir}:sbom`, `oci:${other}:sbom`)
    assert.equal(tagged(await readIndexJson(other), 'sbom')?.digest, sbom.manifest.digest)
  })

  it('gives the same digests for the same input, and fresh ones for unseeded random bytes', async () => {
    const spec: ImageSpec = {
      ...TWO_LAYERS,
      layers: [...(TWO_LAYERS.layers ?? []), { randomBytes: 100_000, seed: 'same' }],
    }
    const first = await writeOciImage(freshDir(), { ...spec, tag: 'a' })
    const second = await writeOciImage(freshDir(), { ...spec, tag: 'b' })
    assert.deepEqual(second, first)

    const unseeded = async () =>
      (await writeOciImage(freshDir(), { layers: [{ randomBytes: 1000 }], tag: 'r' })).layers[0]
    assert.notEqual((await unseeded())?.digest, (await unseeded())?.digest)
  })

  it('streams a big random layer to disk without holding it in memory', async () => {
    const size = 256 * 1024 * 1024
    const dir = freshDir()
    const layout = await createOciLayout(dir)
    const before = process.memoryUsage.rss()
    let peak = before
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss())
    }, 5)
    const image = await layout.addImage({ layers: [{ randomBytes: size }], tag: 'big' })
    clearInterval(sampler)
    const layer = image.layers[0]!
    assert.ok(layer.uncompressedSize > size)
    // Garbage collection lets some tens of MiB of spent chunks pile up, whatever the size.
    assert.ok(peak - before < size / 2, `RSS grew by ${(peak - before) >> 20} MiB`)
    assert.equal((await stat(layout.blobPath(layer.digest))).size, layer.size)
    assert.equal(await fileDigest(layout.blobPath(layer.digest)), layer.digest)
    const seen = await skopeoJson<{ Layers: string[] }>('inspect', `oci:${dir}:big`)
    assert.deepEqual(seen.Layers, [layer.digest])
  })

  it('reopens a layout, keeps its tags, and moves a tag when it is reused', async () => {
    const dir = freshDir()
    const first = await writeOciImage(dir, { tag: 'latest' })
    const other = await writeOciImage(dir, {
      layers: [{ files: [{ path: 'v2', content: '2' }] }],
      tag: 'v2',
    })
    let layout: OciLayout = await createOciLayout(dir)
    assert.equal(tagged(layout.index(), 'latest')?.digest, first.manifest.digest)
    await layout.tag('latest', other.manifest)
    layout = await createOciLayout(dir)
    assert.equal(layout.index().manifests.length, 2)
    const seen = await skopeoJson<{ Digest: string }>('inspect', `oci:${dir}:latest`)
    assert.equal(seen.Digest, other.manifest.digest)
  })
})
