// `atcr verify <image>`: the registry is only a messenger. What counts is the owner's
// repository: their DID document names their PDS and signing key; the PDS hands out the
// manifest record (and, for a tag, the tag record) with the MST path to it under a signed
// commit (com.atproto.sync.getRecord); the record's manifestBlob is a CID, a hash of the
// exact manifest bytes. If the commit verifies with the DID's key and the CID matches
// the bytes the registry served, those bytes are what the owner published. No other keys.
import { createHash } from 'node:crypto'
import { readCar } from '@atcr/core/car'
import {
  createGuardedFetch,
  createIdentityResolver,
  type GuardedFetch,
  IdentityError,
  type ResolvedIdentity,
  SsrfBlockedError,
} from '@atcr/core/identity'
import { digestFromManifestRkey, manifestRkey, NSID, tagRkey } from '@atcr/core/lexicons'
import {
  explainRepositoryName,
  explainTag,
  MANIFEST_MEDIA_TYPES,
  type ParsedDigest,
  parseDigest,
} from '@atcr/core/oci'
import { getBlobCid, isBlobRef, isRawCid, SHA256_HASH_CODE } from '@atproto/lex-data'
import { type Commit, def, MemoryBlockstore, MST, verifyCommitSig } from '@atproto/repo'
import { accountMatches, accountUsername, activeAccount, loadCredentials } from './accounts.ts'
import { DEFAULT_REGISTRY, isLoopbackHost, registryUrl } from './registry.ts'

export type VerifyStep =
  | 'reference'
  | 'registry'
  | 'digest'
  | 'identity'
  | 'pds'
  | 'repo'
  | 'signature'
  | 'record'
  | 'tag'
  | 'manifest'

/** Verification failed at `step`; the message is the reason, for people. */
export class VerifyError extends Error {
  readonly step: VerifyStep
  constructor(step: VerifyStep, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'VerifyError'
    this.step = step
  }
}

export interface ImageReference {
  /** Registry host. */
  host: string
  /** The identity as written: a handle, `did:plc:x`, or the client-safe `did-plc-x`. */
  identity: string
  repository: string
  tag?: string
  digest?: string
}

const HOSTLIKE = /[.:]|^localhost$/

/** `host/identity/repo[:tag][@digest]`; a first component without `.` or `:` means atcr.io. */
export function parseImageReference(reference: string): ImageReference {
  let rest = reference.trim().replace(/^docker:\/\//, '')
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
  }
  const parts = rest.split('/')
  let host = DEFAULT_REGISTRY
  if (parts.length > 2 && HOSTLIKE.test(parts[0]!)) host = parts.shift()!.toLowerCase()
  const identity = parts.shift()
  const repository = parts.join('/')
  if (!identity || repository === '') {
    throw new VerifyError(
      'reference',
      `${reference} is not an image reference (registry/identity/repository[:tag|@digest])`,
    )
  }
  const problem = explainRepositoryName(repository)
  if (problem) throw new VerifyError('reference', problem)
  if (tag !== undefined) {
    const tagProblem = explainTag(tag)
    if (tagProblem) throw new VerifyError('reference', tagProblem)
  }
  if (digest !== undefined) {
    try {
      parseDigest(digest)
    } catch (error) {
      throw new VerifyError('reference', (error as Error).message)
    }
  }
  if (tag === undefined && digest === undefined) tag = 'latest'
  return {
    host,
    identity,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  }
}

/** `did-plc-x` (how image names spell DIDs) → `did:plc:x`; handles and DIDs unchanged. */
export function identityOf(component: string): string {
  const safe = /^did-(plc|web)-([a-z0-9._-]+)$/.exec(component)
  return safe ? `did:${safe[1]}:${safe[2]}` : component
}

export interface VerifyOptions {
  reference: string
  /** Plain HTTP to the registry, and local addresses for PLC, PDS and did:web. */
  insecure: boolean
  plcUrl: string
  handleResolver?: string
  /** Stored credentials for registries that refuse anonymous pulls. */
  credentialsFile?: string
}

export interface VerifiedRecord {
  uri: string
  cid: string
  commit: string
  rev: string
}

export interface Verification {
  reference: string
  registry: string
  digest: string
  mediaType: string | undefined
  size: number
  did: string
  handle: string | undefined
  pds: string
  signingKey: string
  publishedAt: string | undefined
  manifest: VerifiedRecord
  tag?: VerifiedRecord & { name: string }
}

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_PROOF_BYTES = 2 * 1024 * 1024
const TIMEOUT_MS = 30_000

export async function verifyImage(options: VerifyOptions): Promise<Verification> {
  const ref = parseImageReference(options.reference)
  // A registry on this machine means a local stack: its PLC and PDS are local too.
  const dev = options.insecure || isLoopbackHost(ref.host)
  const mode = dev ? 'dev' : 'production'
  const guarded = createGuardedFetch({ mode })
  const resolver = createIdentityResolver({
    mode,
    plcUrl: options.plcUrl,
    fetch: guarded,
    ...(options.handleResolver ? { handleResolver: options.handleResolver } : {}),
  })
  try {
    const served = await fetchManifest(ref, options)

    let identity: ResolvedIdentity
    try {
      identity = await resolver.resolveIdentity(identityOf(ref.identity))
    } catch (error) {
      if (error instanceof IdentityError || error instanceof SsrfBlockedError) {
        throw new VerifyError('identity', `cannot resolve ${ref.identity}: ${error.message}`, {
          cause: error,
        })
      }
      throw error
    }

    let tag: Verification['tag']
    if (ref.tag !== undefined && ref.digest === undefined) {
      const proof = await provenRecord(
        guarded,
        identity,
        NSID.tag,
        tagRkey(ref.repository, ref.tag),
      )
      if (!proof.record) {
        throw new VerifyError(
          'tag',
          `${identity.did} has no tag ${ref.repository}:${ref.tag} in its repository ` +
            `(${proof.absence}): the registry serves a tag the owner did not publish`,
        )
      }
      const tagged = taggedDigest(proof.record)
      if (tagged !== served.digest) {
        throw new VerifyError(
          'tag',
          `the registry served ${served.digest} for ${ref.repository}:${ref.tag}, but the ` +
            `owner's signed repository tags ${tagged ?? 'no manifest'}`,
        )
      }
      tag = { name: ref.tag, ...proof.where }
    }

    const proof = await provenRecord(guarded, identity, NSID.manifest, manifestRkey(served.digest))
    if (!proof.record) {
      throw new VerifyError(
        'record',
        `${identity.did} has no io.atcr.manifest record for ${served.digest} in its repository ` +
          `(${proof.absence}): the registry serves a manifest the owner ` +
          'did not publish, or the owner deleted it',
      )
    }
    checkManifestRecord(proof.record, served)
    return {
      reference: options.reference,
      registry: ref.host,
      digest: served.digest,
      mediaType: served.mediaType,
      size: served.bytes.byteLength,
      did: identity.did,
      handle: identity.handle,
      pds: identity.pdsEndpoint,
      signingKey: identity.signingKey,
      publishedAt: typeof proof.record.createdAt === 'string' ? proof.record.createdAt : undefined,
      manifest: proof.where,
      ...(tag ? { tag } : {}),
    }
  } finally {
    await resolver.close()
    await guarded.close()
  }
}

interface ServedManifest {
  bytes: Uint8Array
  digest: string
  mediaType: string | undefined
}

/** The manifest bytes as the registry serves them, and their digest as computed here. */
async function fetchManifest(ref: ImageReference, options: VerifyOptions): Promise<ServedManifest> {
  const base = registryUrl(ref.host, options.insecure)
  const reference = ref.digest ?? ref.tag!
  const url = `${base}/v2/${ref.identity}/${ref.repository}/manifests/${reference}`
  const headers = { accept: MANIFEST_MEDIA_TYPES.join(', ') }
  let response = await registryFetch(url, { headers })
  if (response.status === 401) {
    const challenge = response.headers.get('www-authenticate') ?? ''
    await response.body?.cancel()
    const token = await registryToken(challenge, ref, options)
    response = await registryFetch(url, {
      headers: { ...headers, authorization: `Bearer ${token}` },
    })
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '')
    throw new VerifyError(
      'registry',
      `${ref.host} answered ${response.status} for ${ref.identity}/${ref.repository}:${reference}: ${text.slice(0, 300)}`,
    )
  }
  const bytes = await readBounded(response, MAX_MANIFEST_BYTES, 'registry')
  const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim() || undefined
  // The digest is computed here; the registry's Docker-Content-Digest header is not trusted.
  let algorithm: ParsedDigest['algorithm'] = 'sha256'
  if (ref.digest) algorithm = parseDigest(ref.digest).algorithm
  const digest = `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
  if (ref.digest && digest !== ref.digest) {
    throw new VerifyError(
      'digest',
      `the registry served bytes whose digest is ${digest} when asked for ${ref.digest}`,
    )
  }
  return { bytes, digest, mediaType }
}

async function registryFetch(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) })
  } catch (error) {
    throw new VerifyError('registry', `cannot reach ${url}: ${(error as Error).message}`, {
      cause: error,
    })
  }
}

/** A pull token from the realm the registry named; with stored credentials when there are. */
async function registryToken(
  challenge: string,
  ref: ImageReference,
  options: VerifyOptions,
): Promise<string> {
  const params = Object.fromEntries(
    [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!.toLowerCase(), m[2]!]),
  )
  if (!/^bearer\s/i.test(challenge) || !params.realm) {
    throw new VerifyError('registry', `${ref.host} asks for credentials it does not describe`)
  }
  const realm = new URL(params.realm)
  if (params.service) realm.searchParams.set('service', params.service)
  realm.searchParams.set(
    'scope',
    params.scope ?? `repository:${ref.identity}/${ref.repository}:pull`,
  )
  const headers: Record<string, string> = {}
  if (options.credentialsFile) {
    const data = await loadCredentials(options.credentialsFile).catch(() => undefined)
    const entry = data?.registries[ref.host]
    const account =
      entry?.accounts.find((a) => accountMatches(a, ref.identity)) ??
      (entry ? activeAccount(entry) : undefined)
    if (account) {
      const basic = Buffer.from(`${accountUsername(account)}:${account.secret}`).toString('base64')
      headers.authorization = `Basic ${basic}`
    }
  }
  const response = await registryFetch(realm.href, { headers })
  const body = (await response.json().catch(() => ({}))) as {
    token?: string
    access_token?: string
  }
  const token = body.token ?? body.access_token
  if (!response.ok || !token) {
    throw new VerifyError(
      'registry',
      `${realm.origin} gave no pull token (HTTP ${response.status})`,
    )
  }
  return token
}

async function readBounded(response: Response, max: number, step: VerifyStep): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength
    if (size > max) {
      await response.body?.cancel()
      throw new VerifyError(step, `answer larger than ${max} bytes from ${response.url}`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

interface RecordProof {
  /** The record, or null when the signed MST proves it absent (or the PDS says so). */
  record: Record<string, unknown> | null
  /** How the absence of a missing record is known. */
  absence: string
  where: VerifiedRecord
}

/**
 * A record with its proof from the owner's PDS: the commit must be the owner's, signed by
 * the key in their DID document, and the MST under it must lead to the record's CID.
 */
async function provenRecord(
  fetcher: GuardedFetch,
  identity: ResolvedIdentity,
  collection: string,
  rkey: string,
): Promise<RecordProof> {
  const url = new URL('/xrpc/com.atproto.sync.getRecord', identity.pdsEndpoint)
  url.searchParams.set('did', identity.did)
  url.searchParams.set('collection', collection)
  url.searchParams.set('rkey', rkey)
  let response: Response
  try {
    response = await fetcher(url, { signal: AbortSignal.timeout(TIMEOUT_MS) })
  } catch (error) {
    throw new VerifyError(
      'pds',
      `cannot reach ${identity.pdsEndpoint}: ${(error as Error).message}`,
      {
        cause: error,
      },
    )
  }
  const uri = `at://${identity.did}/${collection}/${rkey}`
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { error?: string; message?: string }
    if (body.error === 'RecordNotFound') {
      return {
        record: null,
        absence: 'the PDS answered RecordNotFound',
        where: { uri, cid: '', commit: '', rev: '' },
      }
    }
    throw new VerifyError(
      'pds',
      `${identity.pdsEndpoint} answered ${response.status} for ${uri}: ${body.error ?? ''} ${body.message ?? ''}`,
    )
  }
  const bytes = await readBounded(response, MAX_PROOF_BYTES, 'pds')
  let commitCid: string
  let commit: Commit
  let blocks: MemoryBlockstore
  try {
    const car = await readCar(bytes, { maxBytes: MAX_PROOF_BYTES })
    const root = car.roots[0]
    if (!root || car.roots.length !== 1) throw new Error('expected exactly one root')
    commitCid = root.toString()
    blocks = new MemoryBlockstore(car.blocks)
    commit = await blocks.readObj(root, def.commit)
  } catch (error) {
    throw new VerifyError(
      'repo',
      `the proof for ${uri} is not a repo commit CAR: ${(error as Error).message}`,
      {
        cause: error,
      },
    )
  }
  if (commit.did !== identity.did) {
    throw new VerifyError(
      'repo',
      `the proof for ${uri} is a commit of ${commit.did}, not ${identity.did}`,
    )
  }
  if (!(await verifyCommitSig(commit, identity.signingKey))) {
    throw new VerifyError(
      'signature',
      `commit ${commitCid} (rev ${commit.rev}) is not signed by the key in ${identity.did}'s ` +
        `DID document (${identity.signingKey})`,
    )
  }
  let recordCid: Awaited<ReturnType<MST['get']>>
  try {
    recordCid = await MST.load(blocks, commit.data).get(`${collection}/${rkey}`)
  } catch (error) {
    throw new VerifyError(
      'repo',
      `the proof for ${uri} lacks part of the MST path: ${(error as Error).message}`,
      {
        cause: error,
      },
    )
  }
  const where = { uri, cid: recordCid?.toString() ?? '', commit: commitCid, rev: commit.rev }
  if (!recordCid) {
    return { record: null, absence: `its absence proven at signed commit ${commitCid}`, where }
  }
  let record: Record<string, unknown>
  try {
    record = (await blocks.readRecord(recordCid)) as Record<string, unknown>
  } catch (error) {
    throw new VerifyError(
      'repo',
      `the proof for ${uri} lacks the record block: ${(error as Error).message}`,
      {
        cause: error,
      },
    )
  }
  return { record, absence: '', where }
}

/** The digest a tag record points at (its manifest AT-URI, else the older manifestDigest). */
function taggedDigest(record: Record<string, unknown>): string | undefined {
  if (typeof record.manifest === 'string') {
    const rkey = record.manifest.split('/').pop() ?? ''
    try {
      return digestFromManifestRkey(rkey)
    } catch {
      return undefined
    }
  }
  return typeof record.manifestDigest === 'string' ? record.manifestDigest : undefined
}

/** The record must name this digest, and its manifestBlob must be these very bytes. */
function checkManifestRecord(record: Record<string, unknown>, served: ServedManifest): void {
  if (record.digest !== served.digest) {
    throw new VerifyError(
      'manifest',
      `the owner's record for ${served.digest} names digest ${String(record.digest)}`,
    )
  }
  const blob = record.manifestBlob
  if (!isBlobRef(blob)) {
    throw new VerifyError('manifest', `the owner's record for ${served.digest} has no manifestBlob`)
  }
  const cid = getBlobCid(blob)
  if (!isRawCid(cid) || cid.multihash.code !== SHA256_HASH_CODE) {
    throw new VerifyError('manifest', `the record's manifestBlob ${cid} is not a sha256 raw CID`)
  }
  // A blob's CID is the sha256 of its bytes: equal hashes mean the very bytes the owner stored.
  const sha256 = createHash('sha256').update(served.bytes).digest()
  if (!Buffer.from(cid.multihash.digest).equals(sha256)) {
    throw new VerifyError(
      'manifest',
      `the bytes the registry served do not hash to the record's manifestBlob ${cid}`,
    )
  }
}

export function formatVerification(result: Verification): string {
  const who = result.handle ? `${result.handle} (${result.did})` : result.did
  const lines = [
    `Verified ${result.reference}`,
    `  digest     ${result.digest}${result.mediaType ? ` (${result.mediaType}, ${result.size} bytes)` : ''}`,
    `  published  by ${who}${result.publishedAt ? ` at ${result.publishedAt}` : ''}`,
    `  record     ${result.manifest.uri}`,
    `             in commit ${result.manifest.commit} (rev ${result.manifest.rev})`,
  ]
  if (result.tag) {
    lines.push(`  tag        ${result.tag.name}: ${result.tag.uri}`)
    lines.push(`             in commit ${result.tag.commit} (rev ${result.tag.rev})`)
  }
  lines.push(`  signed by  ${result.signingKey} (from ${result.did}'s DID document)`)
  lines.push(`  pds        ${result.pds}`)
  return `${lines.join('\n')}\n`
}
