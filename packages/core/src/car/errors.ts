import type { Cid } from '@atproto/lex-data'

export type CarErrorCode =
  | 'CarMalformed'
  | 'CarTruncated'
  | 'CarTooLarge'
  | 'BlockHashMismatch'
  | 'MissingBlock'
  | 'InvalidCommit'
  | 'InvalidMst'
  | 'InvalidRecord'
  | 'BadSignature'
  | 'WrongDid'
  | 'EmptyRepo'

/** Every failure of CAR export or import; `code` is stable, the message is for people. */
export class CarError extends Error {
  readonly code: CarErrorCode
  constructor(code: CarErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** The bytes are not a CAR v1 (bad varint, header, CID, or an unsupported hash). */
export class CarMalformedError extends CarError {
  constructor(message: string, options?: ErrorOptions, code: CarErrorCode = 'CarMalformed') {
    super(code, message, options)
  }
}

/** The CAR ends in the middle of its header or of a block. */
export class CarTruncatedError extends CarMalformedError {
  constructor(message: string) {
    super(message, undefined, 'CarTruncated')
  }
}

export class CarTooLargeError extends CarError {
  readonly maxBytes: number
  constructor(maxBytes: number) {
    super('CarTooLarge', `CAR is larger than the ${maxBytes}-byte limit`)
    this.maxBytes = maxBytes
  }
}

/** A block's bytes do not hash to the CID it is stored under. */
export class BlockHashMismatchError extends CarError {
  readonly cid: string
  constructor(cid: Cid, offset: number) {
    super('BlockHashMismatch', `block ${cid} (at byte ${offset}) does not hash to its CID`)
    this.cid = cid.toString()
  }
}

/** The repo references a block (commit, MST node or record) that is not there. */
export class CarMissingBlockError extends CarError {
  readonly cid: string
  constructor(cid: Cid, what: string) {
    super('MissingBlock', `${what} block ${cid} is missing`)
    this.cid = cid.toString()
  }
}

/** The root block is not a signed v3 repo commit. */
export class InvalidCommitError extends CarError {
  constructor(message: string, options?: ErrorOptions) {
    super('InvalidCommit', message, options)
  }
}

/** The MST is not a well-formed, canonical atproto Merkle Search Tree. */
export class InvalidMstError extends CarError {
  constructor(message: string, options?: ErrorOptions) {
    super('InvalidMst', message, options)
  }
}

/** A record block is not a DAG-CBOR map. */
export class InvalidRecordError extends CarError {
  constructor(message: string, options?: ErrorOptions) {
    super('InvalidRecord', message, options)
  }
}

/** The commit signature does not verify against the given signing key. */
export class BadSignatureError extends CarError {
  constructor(commitCid: Cid, signingKey: string) {
    super('BadSignature', `signature on commit ${commitCid} does not verify with ${signingKey}`)
  }
}

/** The commit belongs to another repo than the expected DID. */
export class WrongDidError extends CarError {
  readonly expected: string
  readonly actual: string
  constructor(expected: string, actual: string) {
    super('WrongDid', `repo belongs to ${actual}, expected ${expected}`)
    this.expected = expected
    this.actual = actual
  }
}

/** Export asked for the latest commit of a storage that has none. */
export class EmptyRepoError extends CarError {
  constructor() {
    super('EmptyRepo', 'repo storage has no commit to export')
  }
}
