// Record shapes and NSIDs of ATCR: constants and types generated from lexicons/ (generated.ts),
// runtime validation on @atproto/lexicon, and the deterministic record keys.
export { BlobRef } from '@atproto/lexicon'
export { lexiconDocuments, lexicons, serverLexiconDocuments } from './documents.ts'
export * from './generated.ts'

/**
 * The hold's one-call upload of a small blob (initiate + one part + complete), a method
 * beyond the published lexicons (docs/hold.md): no lexicon document declares it.
 */
export const HOLD_UPLOAD_BLOB = 'io.atcr.hold.uploadBlob'
export {
  crewRkey,
  digestFromManifestRkey,
  manifestRkey,
  parseRepoPageRkey,
  parseTagRkey,
  RecordKeyError,
  repoPageRkey,
  SELF_RKEY,
  scanRkey,
  statsRkey,
  tagRkey,
} from './rkeys.ts'
export {
  LexiconValidationError,
  type ValidationTarget,
  validateInput,
  validateMessage,
  validateOutput,
  validateParams,
  validateRecord,
  validateRecordJson,
} from './validate.ts'
