// Raw distribution-API calls the /v2 tests share: push a blob, push a manifest, read the
// OCI error envelope.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { TestAccount } from '@atcr/testkit'
import type { RegistryStack } from './registry-harness.ts'
import { repoScope } from './registry-harness.ts'

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

export interface OciErrorBody {
  errors: { code: string; message: string; detail?: unknown }[]
}

/** The first error code of an OCI error answer (asserting the envelope's shape). */
export async function errorCode(response: Response): Promise<string> {
  const body = (await response.json()) as OciErrorBody
  assert.ok(Array.isArray(body.errors) && body.errors.length > 0, JSON.stringify(body))
  return body.errors[0]!.code
}

/** A refusal a client retries: a 5xx with the OCI envelope, no stack trace. */
export async function assertRetryable(response: Response): Promise<void> {
  const text = await response.text()
  assert.ok(response.status >= 500, `${response.status} ${text}`)
  const { errors } = JSON.parse(text) as OciErrorBody
  assert.ok(errors[0]?.code, text)
  assert.doesNotMatch(errors[0]!.message, /\n\s+at /)
}

/**
 * The bytes a blob GET leads to: its body (a small blob a filesystem hold sends itself),
 * or what its redirect to a presigned URL (S3's, or the hold's own) serves, followed as
 * clients follow it.
 */
export async function pulledBlob(response: Response): Promise<Buffer> {
  const answer = response.status === 307 ? await fetch(response.headers.get('location')!) : response
  assert.equal(answer.status, 200)
  return Buffer.from(await answer.arrayBuffer())
}

/** What a Pusher needs of a registry: its URL and a way to get tokens. */
export type PushTarget = Pick<RegistryStack, 'url' | 'token'>

export class Pusher {
  readonly stack: PushTarget
  readonly account: TestAccount
  readonly name: string
  #token: string | undefined

  constructor(stack: PushTarget, account: TestAccount, name: string) {
    this.stack = stack
    this.account = account
    this.name = name
  }

  async token(): Promise<string> {
    this.#token ??= await this.stack.token(this.account, [repoScope(this.name, 'pull,push,delete')])
    return this.#token
  }

  /** A request with the pusher's token; redirects are followed, as OCI clients do for blobs. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    headers.set('authorization', `Bearer ${await this.token()}`)
    return fetch(`${this.stack.url}${path}`, { ...init, headers })
  }

  /** A monolithic upload (POST ?digest= with the bytes), whatever the answer. */
  upload(bytes: Uint8Array): Promise<Response> {
    return this.fetch(`/v2/${this.name}/blobs/uploads/?digest=${sha256(bytes)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    })
  }

  /** HEAD of the blob of these bytes. */
  head(bytes: Uint8Array): Promise<Response> {
    return this.fetch(`/v2/${this.name}/blobs/${sha256(bytes)}`, { method: 'HEAD' })
  }

  /** A monolithic upload that must be stored (201). */
  async blob(bytes: Uint8Array | string): Promise<{ digest: string; size: number }> {
    const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes
    const response = await this.upload(data)
    assert.equal(response.status, 201, await response.text())
    return { digest: sha256(data), size: data.byteLength }
  }

  /** A config and one layer, and an OCI image manifest over them (bytes not pushed). */
  async image(label: string, extra: Record<string, unknown> = {}): Promise<ImageManifest> {
    const config = await this.blob(JSON.stringify({ architecture: 'amd64', os: 'linux', label }))
    const layer = await this.blob(`layer of ${label}`)
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      ...extra,
    }
    const bytes = Buffer.from(JSON.stringify(manifest))
    return { manifest, bytes, digest: sha256(bytes), mediaType: manifest.mediaType }
  }

  async putManifest(
    reference: string,
    bytes: Uint8Array,
    mediaType = 'application/vnd.oci.image.manifest.v1+json',
  ): Promise<Response> {
    return this.fetch(`/v2/${this.name}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: bytes,
    })
  }
}

export interface ImageManifest {
  manifest: Record<string, unknown>
  bytes: Buffer
  digest: string
  mediaType: string
}
