export type IdentityErrorCode =
  | 'InvalidHandle'
  | 'InvalidDid'
  | 'IdentityNotFound'
  | 'HandleMismatch'
  | 'DidDocumentInvalid'
  | 'IdentityIncomplete'
  | 'IdentityUnavailable'
  | 'PlcRequestFailed'
  | 'DidTombstoned'
  | 'RotationKeyMissing'
  | 'RotationKeyNotAuthorized'
  | 'KeyFileInvalid'
  | 'KeyFileInsecure'
  | 'DidFileInvalid'

/** Base of every identity error: `code` is stable, `message` is for humans. */
export class IdentityError extends Error {
  readonly code: IdentityErrorCode
  constructor(code: IdentityErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'IdentityError'
    this.code = code
  }
}

export class InvalidHandleError extends IdentityError {
  readonly handle: string
  constructor(handle: string, reason: string, options?: ErrorOptions) {
    super('InvalidHandle', `invalid handle ${JSON.stringify(handle)}: ${reason}`, options)
    this.name = 'InvalidHandleError'
    this.handle = handle
  }
}

export class InvalidDidError extends IdentityError {
  readonly did: string
  constructor(did: string, reason: string, options?: ErrorOptions) {
    super('InvalidDid', `invalid DID ${JSON.stringify(did)}: ${reason}`, options)
    this.name = 'InvalidDidError'
    this.did = did
  }
}

/** The handle or DID does not exist (DNS and well-known empty, PLC 404, did:web 404). */
export class IdentityNotFoundError extends IdentityError {
  readonly subject: string
  constructor(subject: string, reason: string, options?: ErrorOptions) {
    super('IdentityNotFound', `identity not found: ${subject}: ${reason}`, options)
    this.name = 'IdentityNotFoundError'
    this.subject = subject
  }
}

/** The handle points at a DID whose document does not claim the handle back. */
export class HandleMismatchError extends IdentityError {
  readonly handle: string
  readonly did: string
  constructor(handle: string, did: string) {
    super(
      'HandleMismatch',
      `handle ${handle} resolves to ${did}, but that DID document does not claim at://${handle}`,
    )
    this.name = 'HandleMismatchError'
    this.handle = handle
    this.did = did
  }
}

export class DidDocumentInvalidError extends IdentityError {
  readonly did: string
  constructor(did: string, reason: string, options?: ErrorOptions) {
    super('DidDocumentInvalid', `invalid DID document for ${did}: ${reason}`, options)
    this.name = 'DidDocumentInvalidError'
    this.did = did
  }
}

/** The DID document lacks what atproto needs (the #atproto key or the #atproto_pds service). */
export class IdentityIncompleteError extends IdentityError {
  readonly did: string
  readonly missing: 'signingKey' | 'pdsEndpoint'
  constructor(did: string, missing: 'signingKey' | 'pdsEndpoint') {
    const what = missing === 'signingKey' ? '#atproto verification method' : '#atproto_pds service'
    super('IdentityIncomplete', `DID document for ${did} has no usable ${what}`)
    this.name = 'IdentityIncompleteError'
    this.did = did
    this.missing = missing
  }
}

/** A transient failure (network, timeout, 5xx): the identity may exist, try again later. */
export class IdentityUnavailableError extends IdentityError {
  readonly subject: string
  constructor(subject: string, reason: string, options?: ErrorOptions) {
    super('IdentityUnavailable', `could not resolve ${subject}: ${reason}`, options)
    this.name = 'IdentityUnavailableError'
    this.subject = subject
  }
}
