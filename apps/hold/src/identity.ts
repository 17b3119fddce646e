// The hold's identity at boot: its signing key, its DID (did:web from the public URL, or
// a did:plc created once and kept current), and the DID document it publishes.
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { UsageError } from '@atcr/core/cli'
import {
  type DidDocument,
  didWebFromUrl,
  loadKeypair,
  loadOrCreateKeypair,
  loadRotationKey,
} from '@atcr/core/identity'
import type { PlcService } from '@atcr/core/identity/plc'
import type { Logger } from '@atcr/core/log'
import type { Secp256k1Keypair } from '@atproto/crypto'
import { isValidHandle, isValidTld } from '@atproto/syntax'
import type { HoldConfig } from './config.ts'

/** The DID document service ids a hold publishes, both at its public URL. */
export const PDS_SERVICE_ID = 'atproto_pds'
export const HOLD_SERVICE_ID = 'atcr_hold'
export const HOLD_SERVICE_TYPE = 'AtcrHoldService'
const PDS_SERVICE_TYPE = 'AtprotoPersonalDataServer'

export interface HoldIdentity {
  did: string
  signingKey: Secp256k1Keypair
  /**
   * The hold's handle (also its `alsoKnownAs`): the host of its public URL when that is a
   * valid handle the URL can prove, else none (shown as `handle.invalid`).
   */
  handle: string | null
  publicUrl: string
  /** The DID document this hold's identity should resolve to. */
  document: DidDocument
}

/** The hold's config cannot work as given (exit code 2 on the command line). */
export class HoldConfigError extends UsageError {
  override name = 'HoldConfigError'
}

/** The files the hold keeps its identity in, inside the data dir. */
export function identityFiles(dataDir: string) {
  return { signingKey: join(dataDir, 'signing.key'), didFile: join(dataDir, 'did.txt') }
}

/**
 * Loads or creates the hold's identity. did:web: the configured DID or the one derived
 * from public_url. did:plc: the configured DID, else did.txt, else a new DID registered
 * with the PLC directory; then, on every boot, the PLC document is brought up to date with
 * the signing key and public URL (signed by the rotation key when something drifted).
 */
export async function loadHoldIdentity(config: HoldConfig, logger: Logger): Promise<HoldIdentity> {
  const files = identityFiles(config.server.data_dir)
  const signingKey = await loadOrCreateKeypair(files.signingKey)
  const { publicUrl, handle } = publicAddress(config)
  const services: Record<string, PlcService> = {
    [HOLD_SERVICE_ID]: { type: HOLD_SERVICE_TYPE, endpoint: publicUrl },
  }

  let did: string
  if (config.identity.did_method === 'web') {
    did = config.identity.did ?? didWebFromUrl(publicUrl)
  } else {
    // Loaded only here: @did-plc/lib costs a did:web hold (the default) about 7 MiB of heap.
    const { createPlcIdentity, ensurePlcCurrent, loadOrCreateDid } = await import(
      '@atcr/core/identity/plc'
    )
    const plc = {
      plcUrl: config.identity.plc_directory_url,
      mode: config.server.mode,
      signingKey,
      handle,
      serviceEndpoint: publicUrl,
      services,
    }
    const loaded = await loadOrCreateDid({
      configDid: config.identity.did ?? undefined,
      didFile: files.didFile,
      create: async () => {
        const rotationKey = await firstBootRotationKey(config.identity.rotation_key_path, logger)
        return (await createPlcIdentity({ ...plc, rotationKey })).did
      },
    })
    did = loaded.did
    if (loaded.source === 'created') logger.info({ did }, 'created did:plc identity')
    const rotationKey = config.identity.rotation_key_path
      ? await loadRotationKey(config.identity.rotation_key_path)
      : undefined
    const result = await ensurePlcCurrent({ ...plc, did, rotationKey })
    if (result.updated) logger.info({ did, changes: result.changes }, 'updated the PLC document')
  }

  return holdIdentity(did, signingKey, config)
}

/**
 * The identity as stored in the data dir, without creating anything or contacting the
 * PLC directory: for offline commands (`repo export`, `repo import`) on an existing hold.
 */
export async function loadStoredIdentity(config: HoldConfig): Promise<HoldIdentity> {
  const files = identityFiles(config.server.data_dir)
  const signingKey = await loadKeypair(files.signingKey)
  let did = config.identity.did
  if (!did && config.identity.did_method === 'web')
    did = didWebFromUrl(publicAddress(config).publicUrl)
  if (!did) {
    did = (await readFile(files.didFile, 'utf8').catch(() => '')).trim()
    if (!did)
      throw new HoldConfigError(
        `no did.txt in ${config.server.data_dir}: start the hold once first`,
      )
  }
  return holdIdentity(did, signingKey, config)
}

/** The public URL (no trailing slash) and the handle it gives the hold. */
function publicAddress(config: HoldConfig): { publicUrl: string; handle: string | null } {
  const publicUrl = config.server.public_url.replace(/\/+$/, '')
  return { publicUrl, handle: handleOfUrl(publicUrl) }
}

/**
 * The handle a public URL gives a hold: its host, when that is a valid handle on a TLD a
 * PDS accepts and the URL has no port (handle resolution asks the host's default port
 * for `/.well-known/atproto-did`). Else none: `localhost`, an IP address or a port.
 */
export function handleOfUrl(publicUrl: string): string | null {
  const url = new URL(publicUrl)
  const host = url.hostname.toLowerCase()
  if (url.port !== '' || !isValidHandle(host) || !isValidTld(host)) return null
  return host
}

function holdIdentity(did: string, signingKey: Secp256k1Keypair, config: HoldConfig): HoldIdentity {
  const { publicUrl, handle } = publicAddress(config)
  return {
    did,
    signingKey,
    handle,
    publicUrl,
    document: didDocument(did, signingKey, handle, publicUrl),
  }
}

/**
 * Creating a did:plc needs a rotation key. When its configured file does not exist yet,
 * it is generated there (0600): the operator must back it up, it is the DID's recovery key.
 */
async function firstBootRotationKey(path: string | null, logger: Logger) {
  if (!path) {
    throw new HoldConfigError(
      'identity.rotation_key_path: did:plc needs a rotation key file to create the DID',
    )
  }
  const exists = await access(path).then(
    () => true,
    () => false,
  )
  const key = exists ? await loadRotationKey(path) : await loadOrCreateKeypair(path)
  if (!exists) logger.warn({ path }, 'generated a new PLC rotation key: back it up')
  return key
}

/** The DID document of a hold: its #atproto key, and its PDS and hold services at its URL. */
export function didDocument(
  did: string,
  signingKey: Secp256k1Keypair,
  handle: string | null,
  publicUrl: string,
): DidDocument {
  return {
    '@context': [
      'https://www.w3.org/ns/did/v1',
      'https://w3id.org/security/multikey/v1',
      'https://w3id.org/security/suites/secp256k1-2019/v1',
    ],
    id: did,
    alsoKnownAs: handle ? [`at://${handle}`] : [],
    verificationMethod: [
      {
        id: `${did}#atproto`,
        type: 'Multikey',
        controller: did,
        publicKeyMultibase: signingKey.did().slice('did:key:'.length),
      },
    ],
    service: [
      { id: `#${PDS_SERVICE_ID}`, type: PDS_SERVICE_TYPE, serviceEndpoint: publicUrl },
      { id: `#${HOLD_SERVICE_ID}`, type: HOLD_SERVICE_TYPE, serviceEndpoint: publicUrl },
    ],
  } as DidDocument
}
