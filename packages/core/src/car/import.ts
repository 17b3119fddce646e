// Repo CAR verification: the commit's schema and signature are @atproto/repo's
// (def.commit, verifyCommitSig). Not its verifyRepoCar, which reads with its unbounded
// reader (see reader.ts), skips the canonical-MST check (see mst.ts) and throws untyped
// errors; and it diffs the tree against an empty repo to list records that walkMst yields
// directly.
import { parseDidKey } from '@atproto/crypto'
import { type Cid, isCborCid, type LexMap } from '@atproto/lex-data'
import {
  type BlockMap,
  type Commit,
  cborToLex,
  cborToLexRecord,
  def,
  verifyCommitSig,
} from '@atproto/repo'
import { isValidDid, isValidTid } from '@atproto/syntax'
import {
  BadSignatureError,
  CarMalformedError,
  CarMissingBlockError,
  InvalidCommitError,
  InvalidRecordError,
  WrongDidError,
} from './errors.ts'
import { walkMst } from './mst.ts'
import { type CarReadOptions, type CarSource, readCar } from './reader.ts'

export interface ReadRepoCarOptions extends CarReadOptions {
  /** The DID the repo must belong to (WrongDidError otherwise). */
  did?: string
  /** A `did:key`: when given, the commit must be signed by it (BadSignatureError otherwise). */
  signingKey?: string
}

export interface RepoRecord {
  collection: string
  rkey: string
  cid: Cid
  value: LexMap
}

export interface VerifiedRepoCar {
  did: string
  rev: string
  commitCid: Cid
  /** Root of the commit's MST. */
  dataCid: Cid
  /** True when a signing key was given and the commit signature verified against it. */
  signatureVerified: boolean
  /** Every record of the repo, in MST key order (`collection/rkey` as a string). */
  records: RepoRecord[]
  /** Size of the CAR in bytes. */
  size: number
}

function readCommit(blocks: BlockMap, cid: Cid): { commit: Commit; raw: LexMap } {
  if (!isCborCid(cid)) throw new InvalidCommitError(`commit CID ${cid} is not DAG-CBOR`)
  const bytes = blocks.get(cid)
  if (!bytes) throw new CarMissingBlockError(cid, 'commit')
  let raw: unknown
  try {
    raw = cborToLex(bytes)
  } catch (cause) {
    throw new InvalidCommitError(`commit ${cid} is not DAG-CBOR`, { cause })
  }
  const parsed = def.commit.schema.safeParse(raw)
  if (!parsed.success) throw new InvalidCommitError(`block ${cid} is not a v3 repo commit`)
  const commit = parsed.data
  if (!isValidDid(commit.did)) throw new InvalidCommitError(`commit ${cid} has an invalid DID`)
  if (!isValidTid(commit.rev)) throw new InvalidCommitError(`commit ${cid} has an invalid rev`)
  return { commit, raw: raw as LexMap }
}

/**
 * Reads and verifies a repo CAR (as `com.atproto.sync.getRepo` returns it): every
 * block's hash, the root commit, the DID and signature when asked, and the MST's
 * canonical structure; then returns every record. Nothing is written anywhere.
 */
export async function readRepoCar(
  source: CarSource,
  options: ReadRepoCarOptions = {},
): Promise<VerifiedRepoCar> {
  if (options.signingKey !== undefined) {
    try {
      parseDidKey(options.signingKey)
    } catch (cause) {
      throw new TypeError(`signingKey is not a supported did:key: ${options.signingKey}`, {
        cause,
      })
    }
  }
  const car = await readCar(source, options)
  if (car.roots.length !== 1) {
    throw new CarMalformedError(`a repo CAR has one root, this one has ${car.roots.length}`)
  }
  const commitCid = car.roots[0]!
  const { commit, raw } = readCommit(car.blocks, commitCid)

  if (options.did !== undefined && commit.did !== options.did) {
    throw new WrongDidError(options.did, commit.did)
  }
  if (options.signingKey !== undefined) {
    // The decoded block rather than the schema-parsed commit: the signature covers
    // every field as written.
    if (!(await verifyCommitSig(raw as unknown as Commit, options.signingKey))) {
      throw new BadSignatureError(commitCid, options.signingKey)
    }
  }

  const records: RepoRecord[] = []
  for await (const leaf of walkMst(car.blocks, commit.data)) {
    const bytes = car.blocks.get(leaf.cid)
    if (!bytes) throw new CarMissingBlockError(leaf.cid, `record ${leaf.collection}/${leaf.rkey}`)
    let value: LexMap
    try {
      value = cborToLexRecord(bytes)
    } catch (cause) {
      throw new InvalidRecordError(`record ${leaf.collection}/${leaf.rkey} is not a map`, {
        cause,
      })
    }
    records.push({ ...leaf, value })
  }

  return {
    did: commit.did,
    rev: commit.rev,
    commitCid,
    dataCid: commit.data,
    signatureVerified: options.signingKey !== undefined,
    records,
    size: car.size,
  }
}
