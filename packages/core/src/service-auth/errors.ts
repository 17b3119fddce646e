export type ServiceAuthErrorCode =
  | 'BadJwt'
  | 'BadJwtType'
  | 'BadJwtIss'
  | 'BadJwtSignature'
  | 'BadJwtAudience'
  | 'BadJwtLexiconMethod'
  | 'BadJwtIat'
  | 'JwtExpired'
  | 'IssuerUnavailable'

/**
 * A refused service-auth token. `code` names the reason (the same names the atproto
 * PDS uses in its `error` field, plus `BadJwtIat` and `IssuerUnavailable`).
 */
export class ServiceAuthError extends Error {
  readonly code: ServiceAuthErrorCode
  constructor(code: ServiceAuthErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ServiceAuthError'
    this.code = code
  }
}

/** Malformed: not three base64url JSON parts, or claims of the wrong types. */
export class BadJwtError extends ServiceAuthError {
  constructor(message: string, options?: ErrorOptions) {
    super('BadJwt', message, options)
    this.name = 'BadJwtError'
  }
}

/** A token of another kind (access, refresh, DPoP) presented as a service token. */
export class BadJwtTypeError extends ServiceAuthError {
  constructor(message: string) {
    super('BadJwtType', message)
    this.name = 'BadJwtTypeError'
  }
}

/** The issuer is not a DID, or its DID document cannot vouch for it (no such DID, no key). */
export class BadJwtIssuerError extends ServiceAuthError {
  constructor(message: string, options?: ErrorOptions) {
    super('BadJwtIss', message, options)
    this.name = 'BadJwtIssuerError'
  }
}

export class BadJwtSignatureError extends ServiceAuthError {
  constructor(message: string, options?: ErrorOptions) {
    super('BadJwtSignature', message, options)
    this.name = 'BadJwtSignatureError'
  }
}

export class BadJwtAudienceError extends ServiceAuthError {
  constructor(message: string) {
    super('BadJwtAudience', message)
    this.name = 'BadJwtAudienceError'
  }
}

export class BadJwtLexiconMethodError extends ServiceAuthError {
  constructor(message: string) {
    super('BadJwtLexiconMethod', message)
    this.name = 'BadJwtLexiconMethodError'
  }
}

/** Issued in the future (beyond the allowed clock skew). */
export class BadJwtIatError extends ServiceAuthError {
  constructor(message: string) {
    super('BadJwtIat', message)
    this.name = 'BadJwtIatError'
  }
}

export class JwtExpiredError extends ServiceAuthError {
  constructor(message: string) {
    super('JwtExpired', message)
    this.name = 'JwtExpiredError'
  }
}

/** The issuer's DID could not be resolved right now (network, 5xx): worth a retry. */
export class IssuerUnavailableError extends ServiceAuthError {
  constructor(message: string, options?: ErrorOptions) {
    super('IssuerUnavailable', message, options)
    this.name = 'IssuerUnavailableError'
  }
}
