// Helpers for the tests of the hold's record methods (manifests, crew, quotas, GC): XRPC
// calls with real service tokens from the test PDS, a trusted AppView with its own
// did:web key, and small manifest builders.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import type { ManifestInfo, NotifyManifestInput } from '@atcr/core/lexicons'
import { mintServiceAuthToken } from '@atcr/core/service-auth'
import { type DidWebServer, startDidWebServer, type TestAccount } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import type { HoldContext } from '../src/context.ts'
import { blobPath } from '../src/storage/index.ts'

export const LAYER_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

/** A caller: a PDS account (a fresh service token per call), a fixed token, or nobody. */
export type Caller = TestAccount | { token: string } | null

export interface XrpcResult {
  status: number
  body: Record<string, unknown>
}

/** The hold under test: its URL and DID. */
export interface HoldTarget {
  url: string
  did: string
}

export async function tokenFor(account: TestAccount, aud: string, lxm: string): Promise<string> {
  const { data } = await account.agent.com.atproto.server.getServiceAuth({ aud, lxm })
  return data.token
}

async function headers(hold: HoldTarget, caller: Caller, lxm: string) {
  if (caller === null) return {}
  const token = 'token' in caller ? caller.token : await tokenFor(caller, hold.did, lxm)
  return { authorization: `Bearer ${token}` }
}

/** GET /xrpc/<nsid>?params (a query). */
export async function query(
  hold: HoldTarget,
  nsid: string,
  caller: Caller,
  params: Record<string, string> = {},
): Promise<XrpcResult> {
  const search = new URLSearchParams(params).toString()
  const res = await fetch(`${hold.url}/xrpc/${nsid}${search ? `?${search}` : ''}`, {
    headers: await headers(hold, caller, nsid),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** POST /xrpc/<nsid> with a JSON body (a procedure), or any path with `lxm` given. */
export async function procedure(
  hold: HoldTarget,
  nsid: string,
  caller: Caller,
  body: unknown = {},
  options: { path?: string } = {},
): Promise<XrpcResult> {
  const res = await fetch(`${hold.url}${options.path ?? `/xrpc/${nsid}`}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await headers(hold, caller, nsid)) },
    body: JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

/** A trusted AppView: a did:web served locally, calling with tokens signed by its own key. */
export interface TestAppView {
  did: string
  token(aud: string, lxm: string): Promise<{ token: string }>
  close(): Promise<void>
}

export async function startAppView(): Promise<TestAppView> {
  const server: DidWebServer = await startDidWebServer()
  const keypair = await Secp256k1Keypair.create()
  server.setDocument({
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: server.did,
    verificationMethod: [
      {
        id: `${server.did}#atproto`,
        type: 'Multikey',
        controller: server.did,
        publicKeyMultibase: keypair.did().slice('did:key:'.length),
      },
    ],
    service: [{ id: '#atcr_appview', type: 'AtcrAppView', serviceEndpoint: server.url }],
  })
  return {
    did: server.did,
    token: async (aud, lxm) => ({
      token: await mintServiceAuthToken({ iss: server.did, aud, lxm, keypair }),
    }),
    close: () => server.close(),
  }
}

/** A sha256 digest of some text: distinct, valid digests for made-up blobs. */
export function digestOf(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`
}

export interface BlobSpec {
  digest: string
  size: number
}

/** The manifest part of a notifyManifest input: layers and a config. */
export function imageManifest(layers: BlobSpec[], config: BlobSpec): ManifestInfo {
  return {
    mediaType: OCI_MANIFEST,
    config: { digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: LAYER_TYPE })),
  }
}

export function pushInput(
  userDid: string,
  repository: string,
  manifestDigest: string,
  manifest: ManifestInfo,
  extra: Partial<NotifyManifestInput> = {},
): NotifyManifestInput {
  return { repository, userDid, manifestDigest, manifest, operation: 'push', ...extra }
}

/** Stores `bytes` as the blob of `digest` (the digest need not match: GC does not hash). */
export async function putBlob(ctx: HoldContext, digest: string, bytes: Uint8Array) {
  const [algorithm = '', hex = ''] = digest.split(':')
  const path = blobPath(algorithm, hex)
  await ctx.storage.write(path, Readable.from([Buffer.from(bytes)]))
  return path
}
