// MST verification. @atproto/repo loads and walks an MST (MST.load, verifyRepo) but never
// checks that it is the one canonical tree for its keys (layers, order, minimal prefixes,
// no empty subtrees): a tree shaped otherwise would read the same records yet not be the
// repo its commit names. Kept for that; node decoding is the library's (nodeDataDef).
import { createHash } from 'node:crypto'
import { type Cid, isCborCid } from '@atproto/lex-data'
import { type BlockMap, cborToLex, type NodeData, nodeDataDef } from '@atproto/repo'
import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import { CarMissingBlockError, InvalidMstError } from './errors.ts'

export interface MstLeaf {
  collection: string
  rkey: string
  /** The record's CID. */
  cid: Cid
}

const MAX_KEY_LENGTH = 1024

/** The MST layer of a key: leading zero bits of SHA-256(key), counted in pairs (fanout 4). */
export function mstKeyLayer(key: string): number {
  const hash = createHash('sha256').update(key, 'ascii').digest()
  let zeros = 0
  for (const byte of hash) {
    if (byte === 0) {
      zeros += 8
      continue
    }
    zeros += Math.clz32(byte) - 24
    break
  }
  return Math.floor(zeros / 2)
}

function commonPrefixLength(a: string, b: string): number {
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  return i
}

function decodeKeySuffix(bytes: Uint8Array, node: Cid): string {
  let out = ''
  for (const byte of bytes) {
    if (byte >= 0x80) throw new InvalidMstError(`MST node ${node} has a non-ASCII key`)
    out += String.fromCharCode(byte)
  }
  return out
}

function splitKey(key: string, node: Cid): { collection: string; rkey: string } {
  const slash = key.indexOf('/')
  const collection = key.slice(0, slash)
  const rkey = key.slice(slash + 1)
  if (
    key.length > MAX_KEY_LENGTH ||
    slash < 0 ||
    !isValidNsid(collection) ||
    !isValidRecordKey(rkey)
  ) {
    throw new InvalidMstError(`MST node ${node} has an invalid key ${JSON.stringify(key)}`)
  }
  return { collection, rkey }
}

function readNode(blocks: BlockMap, cid: Cid): NodeData {
  if (!isCborCid(cid)) throw new InvalidMstError(`MST node CID ${cid} is not DAG-CBOR`)
  const bytes = blocks.get(cid)
  if (!bytes) throw new CarMissingBlockError(cid, 'MST node')
  let parsed: ReturnType<typeof nodeDataDef.schema.safeParse>
  try {
    parsed = nodeDataDef.schema.safeParse(cborToLex(bytes))
  } catch (cause) {
    throw new InvalidMstError(`MST node ${cid} is not DAG-CBOR`, { cause })
  }
  if (!parsed.success) throw new InvalidMstError(`block ${cid} is not an MST node`)
  return parsed.data
}

interface Bounds {
  /** The layer this node must be at; null for the root, whose layer its keys decide. */
  layer: number | null
  /** Every key in this subtree must sort strictly after `after` and before `before`. */
  after: string | null
  before: string | null
}

/**
 * Walks an MST from its root, yielding leaves in key order, and rejects anything that
 * is not the one canonical tree for its keys: unsorted or duplicate keys, keys on the
 * wrong layer, non-minimal key prefixes, empty subtrees, or an untrimmed root.
 */
export async function* walkMst(blocks: BlockMap, root: Cid): AsyncGenerator<MstLeaf, void> {
  yield* walkNode(blocks, root, { layer: null, after: null, before: null })
}

async function* walkNode(
  blocks: BlockMap,
  cid: Cid,
  bounds: Bounds,
): AsyncGenerator<MstLeaf, void> {
  const node = readNode(blocks, cid)
  const isRoot = bounds.layer === null
  const keys: string[] = []
  let previous = ''
  for (const entry of node.e) {
    if (!Number.isInteger(entry.p) || entry.p < 0 || entry.p > previous.length) {
      throw new InvalidMstError(`MST node ${cid} has an invalid key prefix length`)
    }
    const key = previous.slice(0, entry.p) + decodeKeySuffix(entry.k, cid)
    if (entry.p !== commonPrefixLength(previous, key)) {
      throw new InvalidMstError(`MST node ${cid} does not compress key ${key} canonically`)
    }
    keys.push(key)
    previous = key
  }

  let layer: number
  if (keys.length === 0) {
    if (node.l === null) {
      if (isRoot) return // the empty repo
      throw new InvalidMstError(`MST node ${cid} is an empty subtree`)
    }
    if (bounds.layer === null) {
      throw new InvalidMstError(`MST root ${cid} holds only a subtree (not trimmed)`)
    }
    layer = bounds.layer
  } else {
    layer = mstKeyLayer(keys[0]!)
    if (bounds.layer !== null && layer !== bounds.layer) {
      throw new InvalidMstError(`MST node ${cid} is at layer ${layer}, expected ${bounds.layer}`)
    }
  }

  for (const [i, key] of keys.entries()) {
    if (mstKeyLayer(key) !== layer) {
      throw new InvalidMstError(`MST node ${cid} holds key ${key} of another layer`)
    }
    const lower = i === 0 ? bounds.after : keys[i - 1]!
    if (lower !== null && key <= lower) {
      throw new InvalidMstError(`MST node ${cid} has key ${key} out of order`)
    }
    if (bounds.before !== null && key >= bounds.before) {
      throw new InvalidMstError(`MST node ${cid} has key ${key} out of order`)
    }
  }

  const hasSubtrees = node.l !== null || node.e.some((entry) => entry.t !== null)
  if (hasSubtrees && layer === 0) {
    throw new InvalidMstError(`MST node ${cid} at layer 0 points to a subtree`)
  }

  if (node.l !== null) {
    yield* walkNode(blocks, node.l, {
      layer: layer - 1,
      after: bounds.after,
      before: keys[0] ?? bounds.before,
    })
  }
  for (const [i, entry] of node.e.entries()) {
    const key = keys[i]!
    if (!isCborCid(entry.v)) {
      throw new InvalidMstError(`MST node ${cid} points ${key} at a non-DAG-CBOR CID`)
    }
    yield { ...splitKey(key, cid), cid: entry.v }
    if (entry.t !== null) {
      yield* walkNode(blocks, entry.t, {
        layer: layer - 1,
        after: key,
        before: keys[i + 1] ?? bounds.before,
      })
    }
  }
}
