// What the scenarios send: blob files whose last 32 bytes are stamped afresh for every
// upload (a registry never already has the blob; the digest comes from the hash of the
// unchanging prefix, computed once), and OCI layouts for skopeo with fresh random layers
// (skopeo's blob-info cache would otherwise mount blobs it saw in another repository of
// the same registry instead of uploading them).
import { createHash, type Hash, randomBytes, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run, writeOciImage } from '@atcr/testkit'
import type { Target } from './targets.ts'

export const MiB = 1024 * 1024
const STAMP_BYTES = 32

export interface StampedBlob {
  path: string
  size: number
  /** Writes a new stamp into the file and returns the file's digest. */
  stamp(label: string): Promise<string>
}

/** A file of `size` random bytes; the last 32 are replaced on each stamp(). */
export async function createStampedBlob(path: string, size: number): Promise<StampedBlob> {
  const file = await open(path, 'w')
  try {
    for (let written = 0; written < size; ) {
      const chunk = randomBytes(Math.min(MiB, size - written))
      await file.write(chunk)
      written += chunk.length
    }
    await file.sync()
  } finally {
    await file.close()
  }
  const prefix: Hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { end: size - STAMP_BYTES - 1 })) {
    prefix.update(chunk as Buffer)
  }
  return {
    path,
    size,
    async stamp(label) {
      const stamp = Buffer.alloc(STAMP_BYTES, ' ')
      stamp.write(`${label}-${randomUUID()}`.slice(0, STAMP_BYTES))
      const handle = await open(path, 'r+')
      try {
        await handle.write(stamp, 0, STAMP_BYTES, size - STAMP_BYTES)
      } finally {
        await handle.close()
      }
      return `sha256:${prefix.copy().update(stamp).digest('hex')}`
    },
  }
}

export interface Layout {
  dir: string
  /** The blob file names (hex digests) the layout holds, sorted. */
  blobs: string[]
  bytes: number
}

async function blobNames(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'blobs', 'sha256'))).filter((n) => !n.startsWith('.')).sort()
}

/** An OCI layout tagged `bench` with `layers` random layers of `layerBytes` each, unseen before. */
export async function createLayout(
  dir: string,
  layers: number,
  layerBytes: number,
): Promise<Layout> {
  const nonce = randomUUID()
  const image = await writeOciImage(dir, {
    tag: 'bench',
    layers: Array.from({ length: layers }, (_, i) => ({
      randomBytes: layerBytes,
      seed: `${nonce}-${i}`,
    })),
  })
  return {
    dir,
    blobs: await blobNames(dir),
    bytes: image.layers.reduce((sum, layer) => sum + layer.size, 0),
  }
}

const SKOPEO_TIMEOUT_MS = 20 * 60_000

/** skopeo copy oci:DIR:bench → docker://HOST/REPO:bench. */
export async function skopeoPush(target: Target, layout: Layout, repo: string): Promise<void> {
  await run(
    'skopeo',
    [
      'copy',
      '--dest-tls-verify=false',
      ...(target.creds ? ['--dest-creds', target.creds] : []),
      `oci:${layout.dir}:bench`,
      `docker://${target.host}/${repo}:bench`,
    ],
    { timeoutMs: SKOPEO_TIMEOUT_MS },
  )
}

/** skopeo copy docker://HOST/REPO:bench → a fresh oci: dir; checks it got the same blobs. */
export async function skopeoPull(
  target: Target,
  repo: string,
  into: string,
  expected: Layout,
): Promise<void> {
  await run(
    'skopeo',
    [
      'copy',
      '--src-tls-verify=false',
      ...(target.creds ? ['--src-creds', target.creds] : []),
      `docker://${target.host}/${repo}:bench`,
      `oci:${into}:bench`,
    ],
    { timeoutMs: SKOPEO_TIMEOUT_MS },
  )
  const got = await blobNames(into)
  if (got.join() !== expected.blobs.join()) {
    throw new Error(`pulled ${got.length} blobs, expected ${expected.blobs.length}`)
  }
  await rm(into, { recursive: true, force: true })
}
