// Calls to a hold's XRPC methods as an AppView or a client makes them: signed in with a
// real service token minted by the caller's PDS (com.atproto.server.getServiceAuth), with
// a given token, or anonymously. The blob helpers upload and download the way an AppView
// does (initiate, part URLs, parts, complete; getBlob).
import assert from 'node:assert/strict'
import { HOLD_UPLOAD_BLOB, NSID } from '@atcr/core/lexicons'
import type { TestAccount } from '@atcr/testkit'

/** Who calls: a PDS account (a fresh service token per call), a fixed token, or nobody. */
export type Caller = TestAccount | { token: string } | null

/** The hold called: its URL and DID (a `TestHold` is one). */
export interface HoldTarget {
  url: string
  did: string
}

export interface XrpcResult<T = Record<string, unknown>> {
  status: number
  body: T
  headers: Headers
}

/** A service token from the account's own PDS, for this hold and method. */
export async function pdsToken(account: TestAccount, aud: string, lxm: string): Promise<string> {
  const { data } = await account.agent.com.atproto.server.getServiceAuth({ aud, lxm })
  return data.token
}

async function authHeader(
  hold: HoldTarget,
  caller: Caller,
  lxm: string,
): Promise<Record<string, string>> {
  if (caller === null) return {}
  const token = 'token' in caller ? caller.token : await pdsToken(caller, hold.did, lxm)
  return { authorization: `Bearer ${token}` }
}

async function result<T>(response: Response): Promise<XrpcResult<T>> {
  return { status: response.status, body: (await response.json()) as T, headers: response.headers }
}

/** GET /xrpc/<nsid>?params (a query). */
export async function query<T = Record<string, unknown>>(
  hold: HoldTarget,
  nsid: string,
  caller: Caller,
  params: Record<string, string> = {},
): Promise<XrpcResult<T>> {
  const search = new URLSearchParams(params).toString()
  const response = await fetch(`${hold.url}/xrpc/${nsid}${search ? `?${search}` : ''}`, {
    headers: await authHeader(hold, caller, nsid),
  })
  return result<T>(response)
}

/** POST /xrpc/<nsid> with a JSON body (a procedure), or to another `path` for `nsid`. */
export async function procedure<T = Record<string, unknown>>(
  hold: HoldTarget,
  nsid: string,
  caller: Caller,
  input: unknown = {},
  options: { path?: string } = {},
): Promise<XrpcResult<T>> {
  const response = await fetch(`${hold.url}${options.path ?? `/xrpc/${nsid}`}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await authHeader(hold, caller, nsid)) },
    body: JSON.stringify(input),
  })
  return result<T>(response)
}

/** Each account joins the crew through requestCrew (the hold must allow it). */
export async function joinCrew(hold: HoldTarget, ...accounts: TestAccount[]): Promise<void> {
  for (const account of accounts) {
    const joined = await procedure(hold, NSID.holdRequestCrew, account)
    assert.equal(joined.status, 200, JSON.stringify(joined.body))
  }
}

/** PUTs one part to where getPartUploadUrl says; returns the status and the etag. */
export async function sendPart(
  hold: HoldTarget,
  target: { url: string; method?: string; headers?: Record<string, string> },
  bytes: Uint8Array,
  caller: Caller,
): Promise<{ status: number; etag: string | null; body: string }> {
  const toHold = target.url.startsWith(`${hold.url}/xrpc/`)
  const response = await fetch(target.url, {
    method: target.method ?? 'PUT',
    headers: {
      ...(target.headers ?? {}),
      ...(toHold ? await authHeader(hold, caller, NSID.holdUploadPart) : {}),
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
  hold: HoldTarget,
  uploadId: string,
  partNumber: number | string,
  bytes: Uint8Array,
  caller: Caller,
): Promise<XrpcResult> {
  const response = await fetch(`${hold.url}/xrpc/${NSID.holdUploadPart}`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      'x-upload-id': uploadId,
      'x-part-number': String(partNumber),
      ...(await authHeader(hold, caller, NSID.holdUploadPart)),
    },
    body: bytes,
  })
  return result(response)
}

/** io.atcr.hold.uploadBlob (beyond the published lexicons): a whole blob in one call. */
export async function uploadBlobToHold(
  hold: HoldTarget,
  digest: string,
  bytes: Uint8Array,
  caller: Caller,
): Promise<XrpcResult> {
  const query = new URLSearchParams({ digest })
  const response = await fetch(`${hold.url}/xrpc/${HOLD_UPLOAD_BLOB}?${query}`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      ...(await authHeader(hold, caller, HOLD_UPLOAD_BLOB)),
    },
    body: bytes,
  })
  return result(response)
}

export interface UploadedParts {
  uploadId: string
  parts: { partNumber: number; etag: string }[]
}

/** initiateUpload: opens an upload of `digest` (undefined: named only at completion). */
export function initiateUpload(
  hold: HoldTarget,
  digest: string | undefined,
  caller: Caller,
): Promise<XrpcResult<Record<string, unknown> & { uploadId: string }>> {
  return procedure(hold, NSID.holdInitiateUpload, caller, digest === undefined ? {} : { digest })
}

/** initiateUpload, then every part through getPartUploadUrl; completes nothing. */
export async function uploadParts(
  hold: HoldTarget,
  digest: string | undefined,
  parts: readonly Uint8Array[],
  caller: Caller,
): Promise<UploadedParts> {
  const initiated = await initiateUpload(hold, digest, caller)
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
    }>(hold, NSID.holdGetPartUploadUrl, caller, { uploadId, partNumber })
    if (target.status !== 200) throw new Error(`getPartUploadUrl: ${JSON.stringify(target.body)}`)
    const put = await sendPart(hold, target.body, bytes, caller)
    if (put.status !== 200 || !put.etag)
      throw new Error(`part ${partNumber}: ${put.status} ${put.body}`)
    sent.push({ partNumber, etag: put.etag })
  }
  return { uploadId, parts: sent }
}

export function complete(
  hold: HoldTarget,
  upload: UploadedParts,
  digest: string,
  caller: Caller,
): Promise<XrpcResult> {
  return procedure(hold, NSID.holdCompleteUpload, caller, {
    uploadId: upload.uploadId,
    digest,
    parts: upload.parts,
  })
}

export function getBlobUrl(hold: HoldTarget, digest: string): string {
  return `${hold.url}/xrpc/com.atproto.sync.getBlob?did=${encodeURIComponent(hold.did)}&cid=${encodeURIComponent(digest)}`
}

/** getBlob as a client sends it, without following a redirect. */
export async function getBlob(
  hold: HoldTarget,
  digest: string,
  options: { credential?: Caller; method?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  return fetch(getBlobUrl(hold, digest), {
    method: options.method ?? 'GET',
    redirect: 'manual',
    headers: {
      ...(options.headers ?? {}),
      ...(await authHeader(hold, options.credential ?? null, 'com.atproto.sync.getBlob')),
    },
  })
}
