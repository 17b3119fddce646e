export {
  BadJwtAudienceError,
  BadJwtError,
  BadJwtIatError,
  BadJwtIssuerError,
  BadJwtLexiconMethodError,
  BadJwtSignatureError,
  BadJwtTypeError,
  IssuerUnavailableError,
  JwtExpiredError,
  ServiceAuthError,
  type ServiceAuthErrorCode,
} from './errors.ts'
export { type MintServiceAuthTokenOptions, mintServiceAuthToken } from './mint.ts'
export {
  type SigningKeyResolver,
  type VerifiedServiceAuth,
  VerifiedSignatures,
  type VerifyServiceAuthOptions,
  verifyServiceAuthToken,
} from './verify.ts'
