import {
  formatDidKey,
  multibaseToBytes,
  P256_JWT_ALG,
  parseMultikey,
  SECP256K1_JWT_ALG,
} from '@atproto/crypto'
import {
  type AtprotoDidDocument,
  type DidDocument,
  didDocumentValidator,
  extractAtprotoData,
} from '@atproto/did'
import { DidDocumentInvalidError } from './errors.ts'

export type { DidDocument }

/** What atproto reads from a DID document. */
export interface AtprotoDocumentData {
  did: string
  /** The first `at://` alsoKnownAs entry, without the prefix, lowercased. Not verified. */
  handle: string | undefined
  /** The `#atproto_pds` service endpoint (type AtprotoPersonalDataServer), no trailing `/`. */
  pdsEndpoint: string | undefined
  /** The `#atproto` verification method as a `did:key`. */
  signingKey: string | undefined
}

/** Validates a fetched DID document and checks that it is the document of `did`. */
export function parseDidDocument(did: string, value: unknown): DidDocument {
  const parsed = didDocumentValidator.safeParse(value)
  if (!parsed.success) {
    throw new DidDocumentInvalidError(did, parsed.error.issues[0]?.message ?? 'malformed', {
      cause: parsed.error,
    })
  }
  if (parsed.data.id !== did) {
    throw new DidDocumentInvalidError(did, `document id is ${parsed.data.id}`)
  }
  return parsed.data
}

export function extractAtprotoDocumentData(document: DidDocument): AtprotoDocumentData {
  // Only did:plc and did:web documents reach here (resolveDid refuses other methods).
  const data = extractAtprotoData(document as AtprotoDidDocument)
  let signingKey: string | undefined
  if (data.key) {
    try {
      signingKey = didKeyFromVerificationMethod(data.key.type, data.key.publicKeyMultibase)
    } catch {
      signingKey = undefined
    }
  }
  return {
    did: document.id,
    handle: data.aka?.toLowerCase(),
    pdsEndpoint: data.pds ? httpEndpoint(data.pds.serviceEndpoint) : undefined,
    signingKey,
  }
}

/**
 * The endpoint of the service `#id` (optionally of `type`), e.g. the hold's
 * `#atcr_hold` service, as an http(s) URL without a trailing slash.
 */
export function getServiceEndpoint(
  document: DidDocument,
  id: string,
  type?: string,
): string | undefined {
  const fragment = id.startsWith('#') ? id : `#${id}`
  for (const service of document.service ?? []) {
    if (service.id !== fragment && service.id !== `${document.id}${fragment}`) continue
    if (type !== undefined) {
      const types = Array.isArray(service.type) ? service.type : [service.type]
      if (!types.includes(type)) continue
    }
    if (typeof service.serviceEndpoint !== 'string') continue
    return httpEndpoint(service.serviceEndpoint)
  }
  return undefined
}

function httpEndpoint(value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.search || url.hash || url.username || url.password) return undefined
  return url.href.replace(/\/+$/, '')
}

/** A verification method's public key as a did:key (Multikey and the two legacy types). */
function didKeyFromVerificationMethod(
  type: string,
  publicKeyMultibase: string,
): string | undefined {
  if (type === 'Multikey') {
    const parsed = parseMultikey(publicKeyMultibase)
    return formatDidKey(parsed.jwtAlg, parsed.keyBytes)
  }
  if (type === 'EcdsaSecp256k1VerificationKey2019') {
    return formatDidKey(SECP256K1_JWT_ALG, multibaseToBytes(publicKeyMultibase))
  }
  if (type === 'EcdsaSecp256r1VerificationKey2019') {
    return formatDidKey(P256_JWT_ALG, multibaseToBytes(publicKeyMultibase))
  }
  return undefined
}
