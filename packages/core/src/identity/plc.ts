import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { isAtprotoDid, isDidPlc } from '@atproto/did'
import {
  type CompatibleOpOrTombstone,
  createUpdateOp,
  def,
  didForCreateOp,
  normalizeOp,
  type Operation,
  signOperation,
  type UnsignedOperation,
} from '@did-plc/lib'
import { readBoundedJson, readBoundedText } from './body.ts'
import { IdentityError, IdentityNotFoundError, InvalidDidError } from './errors.ts'
import type { IdentityMode } from './mode.ts'
import { DEFAULT_PLC_URL } from './resolver.ts'
import { createGuardedFetch, type FetchLike } from './ssrf.ts'

/** What PLC operations are signed with (a K256 or P256 keypair from @atproto/crypto). */
export interface PlcSigner {
  jwtAlg: string
  did(): string
  sign(message: Uint8Array): Promise<Uint8Array>
}

/** Something that names a public key as a did:key (a keypair, or just its did:key). */
export type PublicKeyRef = { did(): string } | string

export interface PlcService {
  type: string
  endpoint: string
}

export class PlcRequestError extends IdentityError {
  readonly status: number | undefined
  constructor(message: string, status?: number, options?: ErrorOptions) {
    super('PlcRequestFailed', message, options)
    this.name = 'PlcRequestError'
    this.status = status
  }
}

export class DidTombstonedError extends IdentityError {
  readonly did: string
  constructor(did: string) {
    super('DidTombstoned', `${did} was tombstoned in the PLC directory`)
    this.name = 'DidTombstonedError'
    this.did = did
  }
}

/** The PLC document drifted from local state, and there is no rotation key to fix it. */
export class RotationKeyMissingError extends IdentityError {
  readonly did: string
  readonly changes: PlcChange[]
  constructor(did: string, changes: PlcChange[]) {
    const list = changes.map((change) => change.field).join(', ')
    super(
      'RotationKeyMissing',
      `the PLC document of ${did} is out of date (${list}) and no rotation key is configured to update it`,
    )
    this.name = 'RotationKeyMissingError'
    this.did = did
    this.changes = changes
  }
}

/** The configured rotation key is not one of the DID's rotation keys. */
export class RotationKeyNotAuthorizedError extends IdentityError {
  readonly did: string
  readonly rotationKey: string
  constructor(did: string, rotationKey: string) {
    super(
      'RotationKeyNotAuthorized',
      `the configured rotation key ${rotationKey} is not a rotation key of ${did}`,
    )
    this.name = 'RotationKeyNotAuthorizedError'
    this.did = did
    this.rotationKey = rotationKey
  }
}

export class DidFileError extends IdentityError {
  readonly path: string
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super('DidFileInvalid', `DID file ${path}: ${reason}`, options)
    this.name = 'DidFileError'
    this.path = path
  }
}

export interface PlcClientOptions {
  plcUrl?: string
  /** Used when `fetch` is not given: a guarded fetch for this mode; default production. */
  mode?: IdentityMode
  fetch?: FetchLike
  timeoutMs?: number
}

export interface LoadOrCreateDidOptions {
  /** The DID from config; wins over everything. */
  configDid?: string
  /** Where a created DID is remembered (the data dir's `did.txt`). */
  didFile: string
  /** Creates a DID when neither config nor the file has one. */
  create: () => Promise<string>
}

export interface LoadedDid {
  did: string
  source: 'config' | 'file' | 'created'
}

/** The DID to use: config DID, else `did.txt`, else a newly created one (then saved). */
export async function loadOrCreateDid(options: LoadOrCreateDidOptions): Promise<LoadedDid> {
  if (options.configDid) {
    if (!isAtprotoDid(options.configDid)) {
      throw new DidFileError('(config)', `${options.configDid} is not a did:plc or did:web`)
    }
    return { did: options.configDid, source: 'config' }
  }
  const stored = await readDidFile(options.didFile)
  if (stored) return { did: stored, source: 'file' }
  const did = await options.create()
  if (!isAtprotoDid(did)) throw new DidFileError(options.didFile, `created ${did} is not a DID`)
  if ((await readDidFile(options.didFile)) !== did) await writeDidFile(options.didFile, did)
  return { did, source: 'created' }
}

async function readDidFile(path: string): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new DidFileError(path, (error as Error).message, { cause: error })
  }
  const did = text.trim()
  if (!isAtprotoDid(did)) throw new DidFileError(path, 'does not hold a did:plc or did:web')
  return did
}

async function writeDidFile(path: string, did: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await writeFile(temporary, `${did}\n`, { mode: 0o644 })
    await rename(temporary, path)
  } catch (error) {
    await rm(temporary, { force: true })
    throw new DidFileError(path, (error as Error).message, { cause: error })
  }
}

export interface PlcIdentityState {
  /** The `#atproto` verification method (the key that signs repo commits and tokens). */
  signingKey: PublicKeyRef
  /**
   * alsoKnownAs: `at://<handle>` (`at://` is added when missing); null for none, which
   * resolvers show as `handle.invalid`.
   */
  handle: string | null
  /** The `#atproto_pds` service endpoint (AtprotoPersonalDataServer): the public URL. */
  serviceEndpoint: string
  /** Extra services, by id without `#` (e.g. `atcr_hold`). */
  services?: Record<string, PlcService>
}

export interface CreatePlcIdentityOptions extends PlcIdentityState, PlcClientOptions {
  /** Signs the genesis operation and becomes the DID's only rotation key. */
  rotationKey: PlcSigner
  /** When given, the new DID is written there once the PLC directory accepted it. */
  didFile?: string
}

export interface CreatedPlcIdentity {
  did: string
  operation: Operation
}

/**
 * Creates a did:plc: builds the genesis operation (the rotation key as rotation key, the
 * signing key as `#atproto`, the public URL as `#atproto_pds`, plus extra services), signs
 * it with the rotation key, submits it, and records the DID in `didFile`.
 */
export async function createPlcIdentity(
  options: CreatePlcIdentityOptions,
): Promise<CreatedPlcIdentity> {
  const unsigned: UnsignedOperation = {
    type: 'plc_operation',
    rotationKeys: [options.rotationKey.did()],
    verificationMethods: { atproto: keyDid(options.signingKey) },
    alsoKnownAs: withHandle([], options.handle),
    services: desiredServices(options),
    prev: null,
  }
  const operation = await signOperation(unsigned, options.rotationKey as SignerForLib)
  const did = await didForCreateOp(operation)
  await withPlc(options, (plc) => plc.send(did, operation))
  if (options.didFile) await writeDidFile(options.didFile, did)
  return { did, operation }
}

export type PlcChange =
  | { field: 'signingKey'; from: string | undefined; to: string }
  | { field: 'handle'; from: string[]; to: string | null }
  | { field: 'service'; id: string; from: PlcService | undefined; to: PlcService }

export interface EnsurePlcCurrentOptions extends PlcIdentityState, PlcClientOptions {
  did: string
  /** Needed only when something drifted. */
  rotationKey?: PlcSigner
}

export interface EnsurePlcCurrentResult {
  updated: boolean
  changes: PlcChange[]
}

/**
 * Compares the DID's current PLC state with local state (signing key, handle, service
 * endpoints) and, when they drifted, submits an update operation signed by the rotation
 * key, built on the last operation. Services not named locally are kept as they are.
 */
export async function ensurePlcCurrent(
  options: EnsurePlcCurrentOptions,
): Promise<EnsurePlcCurrentResult> {
  const { did } = options
  if (!isDidPlc(did)) throw new InvalidDidError(did, 'not a did:plc')
  return withPlc(options, async (plc) => {
    const lastOp = await plc.lastOp(did)
    if (lastOp.type === 'plc_tombstone') throw new DidTombstonedError(did)
    const { sig: _sig, ...current } = normalizeOp(lastOp)
    const changes = diffState(current, options)
    if (changes.length === 0) return { updated: false, changes }
    if (!options.rotationKey) throw new RotationKeyMissingError(did, changes)
    const rotationDid = options.rotationKey.did()
    if (!current.rotationKeys.includes(rotationDid)) {
      throw new RotationKeyNotAuthorizedError(did, rotationDid)
    }
    const update = await createUpdateOp(
      lastOp,
      options.rotationKey as SignerForLib,
      (normalized) => ({
        ...normalized,
        verificationMethods: {
          ...normalized.verificationMethods,
          atproto: keyDid(options.signingKey),
        },
        alsoKnownAs: withHandle(normalized.alsoKnownAs, options.handle),
        services: { ...normalized.services, ...desiredServices(options) },
      }),
    )
    await plc.send(did, update)
    return { updated: true, changes }
  })
}

function diffState(
  current: Omit<UnsignedOperation, 'prev'>,
  wanted: PlcIdentityState,
): PlcChange[] {
  const changes: PlcChange[] = []
  const signingKey = keyDid(wanted.signingKey)
  if (current.verificationMethods.atproto !== signingKey) {
    changes.push({ field: 'signingKey', from: current.verificationMethods.atproto, to: signingKey })
  }
  const handles = current.alsoKnownAs.filter(isAtUri)
  const handle = wanted.handle === null ? null : atUri(wanted.handle)
  if (handles.length !== (handle ? 1 : 0) || (handle && handles[0] !== handle)) {
    changes.push({ field: 'handle', from: current.alsoKnownAs, to: handle })
  }
  for (const [id, service] of Object.entries(desiredServices(wanted))) {
    const existing = current.services[id]
    if (
      !existing ||
      existing.type !== service.type ||
      trimSlash(existing.endpoint) !== trimSlash(service.endpoint)
    ) {
      changes.push({ field: 'service', id, from: existing, to: service })
    }
  }
  return changes
}

function desiredServices(state: PlcIdentityState): Record<string, PlcService> {
  return {
    ...state.services,
    atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: trimSlash(state.serviceEndpoint) },
  }
}

/**
 * The handle first (it is the one atproto reads), or none; other `at://` entries (a handle
 * left from an old host) go, entries of other kinds stay.
 */
function withHandle(alsoKnownAs: string[], handle: string | null): string[] {
  const others = alsoKnownAs.filter((entry) => !isAtUri(entry))
  return handle === null ? others : [atUri(handle), ...others]
}

function isAtUri(entry: string): boolean {
  return entry.startsWith('at://')
}

function keyDid(key: PublicKeyRef): string {
  return typeof key === 'string' ? key : key.did()
}

function atUri(handle: string): string {
  return handle.startsWith('at://') ? handle : `at://${handle}`
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '')
}

// @did-plc/lib types its signer with an older @atproto/crypto Keypair; the shape is the same.
type SignerForLib = Parameters<typeof signOperation>[1]

interface PlcClient {
  lastOp(did: string): Promise<CompatibleOpOrTombstone>
  send(did: string, operation: Operation | CompatibleOpOrTombstone): Promise<void>
}

/** A PLC directory client on the guarded fetch (the @did-plc/lib client uses axios). */
async function withPlc<T>(
  options: PlcClientOptions,
  work: (plc: PlcClient) => Promise<T>,
): Promise<T> {
  const base = (options.plcUrl ?? DEFAULT_PLC_URL).replace(/\/+$/, '')
  const ownFetch = options.fetch
    ? undefined
    : createGuardedFetch({ mode: options.mode ?? 'production' })
  const fetch: FetchLike = options.fetch ?? ownFetch!
  const timeoutMs = options.timeoutMs ?? 10_000
  const request = async (did: string, path: string, init: RequestInit = {}) => {
    const url = `${base}/${encodeURIComponent(did)}${path}`
    try {
      return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })
    } catch (cause) {
      throw new PlcRequestError(`PLC request to ${url} failed`, undefined, { cause })
    }
  }
  const plc: PlcClient = {
    lastOp: async (did) => {
      const response = await request(did, '/log/last')
      if (response.status === 404) {
        await response.body?.cancel()
        throw new IdentityNotFoundError(did, 'not registered in the PLC directory')
      }
      if (!response.ok) throw await failure(response, 'reading the last operation')
      const parsed = def.compatibleOpOrTombstone.safeParse(
        await readBoundedJson(response, 64 * 1024),
      )
      if (!parsed.success) throw new PlcRequestError(`malformed last operation for ${did}`)
      return parsed.data
    },
    send: async (did, operation) => {
      const response = await request(did, '', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(operation),
      })
      if (!response.ok) throw await failure(response, `submitting an operation for ${did}`)
      await response.body?.cancel()
    },
  }
  try {
    return await work(plc)
  } finally {
    await ownFetch?.close()
  }
}

async function failure(response: Response, what: string): Promise<PlcRequestError> {
  const text = await readBoundedText(response, 4096).catch(() => '')
  let message = text
  try {
    const body = JSON.parse(text) as { message?: unknown }
    if (typeof body.message === 'string') message = body.message
  } catch {}
  return new PlcRequestError(
    `PLC directory refused ${what}: HTTP ${response.status}${message ? `: ${message}` : ''}`,
    response.status,
  )
}
