// The OCI Distribution API calls the raw scenarios make. Bodies of a blob go through curl
// (streamed from the file, a process of its own, as a client would be); small requests
// through fetch. Every call is bounded in time.
import { createHash } from 'node:crypto'
import { run } from '@atcr/testkit'
import type { Target } from './targets.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
const FETCH_TIMEOUT_MS = 60_000

export const sha256 = (bytes: Uint8Array) =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

function headers(authorization: string | null, more: Record<string, string> = {}) {
  return authorization ? { ...more, authorization } : more
}

async function expectStatus(response: Response, expected: number[], what: string): Promise<void> {
  if (expected.includes(response.status)) return
  const body = await response.text().catch(() => '')
  throw new Error(`${what}: ${response.status} ${body.slice(0, 300)}`)
}

/** POST /v2/<name>/blobs/uploads/: the upload's Location, absolute. */
export async function startUpload(target: Target, repo: string, auth: string | null): Promise<URL> {
  const response = await fetch(`${target.url}/v2/${repo}/blobs/uploads/`, {
    method: 'POST',
    headers: headers(auth),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  await expectStatus(response, [202], `POST ${repo}/blobs/uploads/`)
  await response.body?.cancel()
  const location = response.headers.get('location')
  if (!location) throw new Error('upload started without a Location')
  return new URL(location, target.url)
}

/** Monolithic upload of a file: POST, then PUT <location>?digest= with curl -T (streamed). */
export async function putBlobFile(
  target: Target,
  repo: string,
  file: string,
  digest: string,
  auth: string | null,
  timeoutMs = 600_000,
): Promise<void> {
  const location = await startUpload(target, repo, auth)
  location.searchParams.set('digest', digest)
  const result = await run(
    'curl',
    [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-X',
      'PUT',
      '-T',
      file,
      '-H',
      'Content-Type: application/octet-stream',
      '-H',
      'Expect:',
      ...(auth ? ['-H', `Authorization: ${auth}`] : []),
      location.href,
    ],
    { timeoutMs },
  )
  if (result.stdout.trim() !== '201') throw new Error(`PUT blob: ${result.stdout} ${result.stderr}`)
}

/** Monolithic upload of a few bytes with fetch; returns the digest. */
export async function putBlob(
  target: Target,
  repo: string,
  bytes: Uint8Array,
  auth: string | null,
): Promise<string> {
  const digest = sha256(bytes)
  const location = await startUpload(target, repo, auth)
  location.searchParams.set('digest', digest)
  const response = await fetch(location, {
    method: 'PUT',
    body: bytes,
    headers: headers(auth, { 'content-type': 'application/octet-stream' }),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  await expectStatus(response, [201], `PUT blob ${digest}`)
  await response.body?.cancel()
  return digest
}

/** GET of a URL with curl, following redirects, to /dev/null; checks status and size. */
export async function curlGet(
  url: string,
  auth: string | null,
  expectedBytes: number,
  timeoutMs = 600_000,
): Promise<void> {
  const result = await run(
    'curl',
    [
      '-sS',
      '-L',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{size_download}',
      ...(auth ? ['-H', `Authorization: ${auth}`] : []),
      url,
    ],
    { timeoutMs },
  )
  const [status, size] = result.stdout.trim().split(' ')
  if (status !== '200' || Number(size) !== expectedBytes) {
    throw new Error(`GET ${url}: ${status}, ${size} of ${expectedBytes} bytes ${result.stderr}`)
  }
}

export interface TinyImage {
  manifest: Uint8Array
  digest: string
  mediaType: string
  /** Blobs the manifest names (config and layer), with their sizes. */
  blobs: { digest: string; size: number }[]
}

/** Pushes a two-blob image (config, one 1 KiB layer) with raw calls, by `tag`. */
export async function pushTinyImage(
  target: Target,
  repo: string,
  tag: string,
  auth: string | null,
): Promise<TinyImage> {
  const layer = crypto.getRandomValues(new Uint8Array(1024))
  const layerDigest = await putBlob(target, repo, layer, auth)
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
    }),
  )
  const configDigest = await putBlob(target, repo, config, auth)
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
      layers: [{ mediaType: OCI_LAYER, digest: layerDigest, size: layer.length }],
    }),
  )
  await putManifest(target, repo, tag, manifest, auth)
  return {
    manifest,
    digest: sha256(manifest),
    mediaType: OCI_MANIFEST,
    blobs: [
      { digest: configDigest, size: config.length },
      { digest: layerDigest, size: layer.length },
    ],
  }
}

export async function putManifest(
  target: Target,
  repo: string,
  reference: string,
  manifest: Uint8Array,
  auth: string | null,
): Promise<void> {
  const response = await fetch(`${target.url}/v2/${repo}/manifests/${reference}`, {
    method: 'PUT',
    body: manifest,
    headers: headers(auth, { 'content-type': OCI_MANIFEST }),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  await expectStatus(response, [201], `PUT manifest ${repo}:${reference}`)
  await response.body?.cancel()
}

const MANIFEST_ACCEPT = [
  OCI_MANIFEST,
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ')

export async function getManifest(
  target: Target,
  repo: string,
  reference: string,
  auth: string | null,
): Promise<{
  layers?: { digest: string; size: number }[]
  config?: { digest: string; size: number }
}> {
  const response = await fetch(`${target.url}/v2/${repo}/manifests/${reference}`, {
    headers: headers(auth, { accept: MANIFEST_ACCEPT }),
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  })
  await expectStatus(response, [200], `GET manifest ${repo}:${reference}`)
  return (await response.json()) as {
    layers?: { digest: string; size: number }[]
    config?: { digest: string; size: number }
  }
}

/** GET /v2/<name>/tags/list (one page with `n`, or every page following Link headers). */
export async function listTags(
  target: Target,
  repo: string,
  auth: string | null,
  n?: number,
): Promise<number> {
  let path: string | null = `/v2/${repo}/tags/list${n === undefined ? '' : `?n=${n}`}`
  let count = 0
  for (let page = 0; path !== null && page < 1000; page++) {
    const response: Response = await fetch(new URL(path, target.url), {
      headers: headers(auth),
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    })
    await expectStatus(response, [200], `GET ${path}`)
    const body = (await response.json()) as { tags?: string[] }
    count += body.tags?.length ?? 0
    if (n !== undefined) break
    const link = response.headers.get('link')
    path = link ? (/<([^>]+)>/.exec(link)?.[1] ?? null) : null
  }
  return count
}
