// Test helpers for the hold's blob methods: a Hold on a temp data dir (filesystem or S3
// storage), real service tokens from the test PDS, and a small XRPC client that uploads
// the way an AppView does (initiate, part URLs, parts, complete).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NSID } from '@atcr/core/lexicons'
import { silentLogger } from '@atcr/core/log'
import { freePort, type TestAccount, type TestS3 } from '@atcr/testkit'
import { type HoldConfig, holdConfig } from '../src/config.ts'
import { Hold } from '../src/index.ts'

type Overrides = NonNullable<NonNullable<Parameters<typeof holdConfig.load>[0]>['overrides']>

export const MiB = 1024 * 1024

/** Storage for a test hold: the filesystem in its data dir, or a bucket prefix on S3. */
export type TestStorage = { driver: 'filesystem' } | { driver: 's3'; s3: S3Endpoint }

export interface S3Endpoint {
  s3: TestS3
  /** Where the hold reaches S3 (s3rver, or a proxy in front of it). */
  endpoint: string
  /** Where clients reach it (presigned URLs); must be a `localhost` name for fetch. */
  publicEndpoint: string
}

export interface TestHoldOptions {
  plcUrl: string
  ownerDid: string
  storage?: TestStorage
  overrides?: Overrides
}

export class TestHold {
  hold: Hold
  readonly url: string
  readonly dataDir: string
  readonly config: HoldConfig

  private constructor(hold: Hold, config: HoldConfig) {
    this.hold = hold
    this.config = config
    this.url = config.server.public_url
    this.dataDir = config.server.data_dir
  }

  static async start(options: TestHoldOptions): Promise<TestHold> {
    const port = await freePort()
    const dataDir = await mkdtemp(join(tmpdir(), 'atcr-hold-blobs-'))
    const storage = options.storage ?? { driver: 'filesystem' }
    const base: Overrides = {
      server: {
        host: '127.0.0.1',
        port,
        public_url: `http://localhost:${port}`,
        data_dir: dataDir,
        mode: 'dev',
      },
      identity: { plc_directory_url: options.plcUrl },
      registration: { owner_did: options.ownerDid },
      storage:
        storage.driver === 'filesystem'
          ? { driver: 'filesystem' }
          : {
              driver: 's3',
              s3: {
                endpoint: storage.s3.endpoint,
                public_endpoint: storage.s3.publicEndpoint,
                bucket: storage.s3.s3.bucket,
                region: storage.s3.s3.region,
                force_path_style: true,
                access_key_id: storage.s3.s3.accessKeyId,
                secret_access_key: storage.s3.s3.secretAccessKey,
                prefix: `hold-${port}`,
              },
            },
    }
    const config = await holdConfig.load({
      env: {},
      overrides: deepMerge(base, options.overrides ?? {}),
    })
    const hold = await Hold.create(config, { logger: silentLogger() })
    await hold.start()
    return new TestHold(hold, config)
  }

  get did(): string {
    return this.hold.did
  }

  get ctx() {
    return this.hold.ctx
  }

  /** Destroys the hold and creates it again on the same data dir and port. */
  async restart(): Promise<void> {
    await this.hold.destroy()
    this.hold = await Hold.create(this.config, { logger: silentLogger() })
    await this.hold.start()
  }

  async close(): Promise<void> {
    await this.hold.destroy()
    await rm(this.dataDir, { recursive: true, force: true })
  }
}

/** A service token from the account's own PDS, for this hold and method. */
export async function pdsToken(account: TestAccount, aud: string, lxm: string): Promise<string> {
  const { data } = await account.agent.com.atproto.server.getServiceAuth({ aud, lxm })
  return data.token
}

/** Who calls: a PDS account (a fresh token per call), a fixed token, or nobody. */
export type Credential = TestAccount | { token: string } | null

async function authHeader(
  credential: Credential,
  holdDid: string,
  lxm: string,
): Promise<Record<string, string>> {
  if (credential === null) return {}
  const token =
    'token' in credential && typeof credential.token === 'string'
      ? credential.token
      : await pdsToken(credential as TestAccount, holdDid, lxm)
  return { authorization: `Bearer ${token}` }
}

export interface XrpcResult<T = Record<string, unknown>> {
  status: number
  body: T
  headers: Headers
}

export async function procedure<T = Record<string, unknown>>(
  hold: TestHold,
  nsid: string,
  input: unknown,
  credential: Credential,
): Promise<XrpcResult<T>> {
  const response = await fetch(`${hold.url}/xrpc/${nsid}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(await authHeader(credential, hold.did, nsid)),
    },
    body: JSON.stringify(input),
  })
  return { status: response.status, body: (await response.json()) as T, headers: response.headers }
}

/** PUTs one part to where getPartUploadUrl says; returns the status and the etag. */
export async function sendPart(
  hold: TestHold,
  target: { url: string; method?: string; headers?: Record<string, string> },
  bytes: Uint8Array,
  credential: Credential,
): Promise<{ status: number; etag: string | null; body: string }> {
  const toHold = target.url.startsWith(`${hold.url}/xrpc/`)
  const response = await fetch(target.url, {
    method: target.method ?? 'PUT',
    headers: {
      ...(target.headers ?? {}),
      ...(toHold ? await authHeader(credential, hold.did, NSID.holdUploadPart) : {}),
    },
    body: bytes,
  })
  const body = await response.text()
  let etag = response.headers.get('etag')
  if (toHold && response.ok) etag = (JSON.parse(body) as { etag: string }).etag
  return { status: response.status, etag, body }
}

/** PUTs bytes straight to the hold's uploadPart with explicit headers. */
export async function putPartToHold(
  hold: TestHold,
  uploadId: string,
  partNumber: number | string,
  bytes: Uint8Array,
  credential: Credential,
): Promise<XrpcResult> {
  const response = await fetch(`${hold.url}/xrpc/${NSID.holdUploadPart}`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      'x-upload-id': uploadId,
      'x-part-number': String(partNumber),
      ...(await authHeader(credential, hold.did, NSID.holdUploadPart)),
    },
    body: bytes,
  })
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    headers: response.headers,
  }
}

export interface UploadedParts {
  uploadId: string
  parts: { partNumber: number; etag: string }[]
}

/** initiateUpload, then every part through getPartUploadUrl; completes nothing. */
export async function uploadParts(
  hold: TestHold,
  digest: string,
  parts: readonly Uint8Array[],
  credential: Credential,
): Promise<UploadedParts> {
  const initiated = await procedure<{ uploadId: string }>(
    hold,
    NSID.holdInitiateUpload,
    { digest },
    credential,
  )
  if (initiated.status !== 200) {
    throw new Error(`initiateUpload: ${initiated.status} ${JSON.stringify(initiated.body)}`)
  }
  const { uploadId } = initiated.body
  const sent: { partNumber: number; etag: string }[] = []
  for (const [index, bytes] of parts.entries()) {
    const partNumber = index + 1
    const target = await procedure<{
      url: string
      method?: string
      headers?: Record<string, string>
    }>(hold, NSID.holdGetPartUploadUrl, { uploadId, partNumber }, credential)
    if (target.status !== 200) throw new Error(`getPartUploadUrl: ${JSON.stringify(target.body)}`)
    const put = await sendPart(hold, target.body, bytes, credential)
    if (put.status !== 200 || !put.etag)
      throw new Error(`part ${partNumber}: ${put.status} ${put.body}`)
    sent.push({ partNumber, etag: put.etag })
  }
  return { uploadId, parts: sent }
}

export function complete(
  hold: TestHold,
  upload: UploadedParts,
  digest: string,
  credential: Credential,
): Promise<XrpcResult> {
  return procedure(
    hold,
    NSID.holdCompleteUpload,
    { uploadId: upload.uploadId, digest, parts: upload.parts },
    credential,
  )
}

export function getBlobUrl(hold: TestHold, digest: string): string {
  return `${hold.url}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(hold.did)}&cid=${encodeURIComponent(digest)}`
}

export async function getBlob(
  hold: TestHold,
  digest: string,
  options: { credential?: Credential; method?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  return fetch(getBlobUrl(hold, digest), {
    method: options.method ?? 'GET',
    redirect: 'manual',
    headers: {
      ...(options.headers ?? {}),
      ...(await authHeader(options.credential ?? null, hold.did, 'com.atproto.sync.getBlob')),
    },
  })
}

function deepMerge<T>(base: T, overrides: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(overrides)) return overrides as T
  const merged: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(overrides)) {
    merged[key] = deepMerge((base as Record<string, unknown>)[key], value)
  }
  return merged as T
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
