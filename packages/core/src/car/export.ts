// Repo export on @atproto/repo's writeCarStream. The block walk is ours rather than its
// getFullRepo, which walks the MST layer by layer and then fetches every record block at
// once (the whole repo in memory, MissingBlocksError untyped); this one goes depth first,
// holding only the current path, and waits for a slow destination.
import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Cid } from '@atproto/lex-data'
import {
  type CarBlock,
  def,
  nodeDataDef,
  parseObjByDef,
  type ReadableBlockstore,
  type RepoStorage,
  writeCarStream,
} from '@atproto/repo'
import { CarMissingBlockError, EmptyRepoError } from './errors.ts'

/** Where an export reads blocks from: any @atproto/repo blockstore or repo storage. */
export type RepoBlockSource = ReadableBlockstore | RepoStorage

async function readBlock(storage: RepoBlockSource, cid: Cid, what: string): Promise<Uint8Array> {
  const bytes = await storage.getBytes(cid)
  if (!bytes) throw new CarMissingBlockError(cid, what)
  return bytes
}

/**
 * The commit, then the MST depth-first (each node before its subtrees), each record
 * right after the key that points to it. Only the path from the root to the current
 * node and that path's record blocks are held at a time.
 */
async function* repoBlocks(storage: RepoBlockSource, commitCid: Cid): AsyncGenerator<CarBlock> {
  const commitBytes = await readBlock(storage, commitCid, 'commit')
  const commit = parseObjByDef(commitBytes, commitCid, def.commit).obj
  yield { cid: commitCid, bytes: commitBytes }
  yield* nodeBlocks(storage, commit.data, new Set())
}

async function* nodeBlocks(
  storage: RepoBlockSource,
  cid: Cid,
  sentRecords: Set<string>,
): AsyncGenerator<CarBlock> {
  const bytes = await readBlock(storage, cid, 'MST node')
  const node = parseObjByDef(bytes, cid, nodeDataDef).obj
  yield { cid, bytes }
  // One batched read per node for its records.
  const wanted = node.e.map((entry) => entry.v).filter((v) => !sentRecords.has(v.toString()))
  const records = await storage.getBlocks(wanted)
  const missing = records.missing[0]
  if (missing) throw new CarMissingBlockError(missing, 'record')

  if (node.l) yield* nodeBlocks(storage, node.l, sentRecords)
  for (const entry of node.e) {
    const key = entry.v.toString()
    if (!sentRecords.has(key)) {
      sentRecords.add(key)
      yield { cid: entry.v, bytes: records.blocks.get(entry.v)! }
    }
    if (entry.t) yield* nodeBlocks(storage, entry.t, sentRecords)
  }
}

/**
 * Streams a repo as a CAR v1 whose single root is the commit: the commit block, every
 * MST node and every record block, each once. Without `commitCid` it exports the
 * storage's current root (EmptyRepoError when there is none).
 */
export function exportRepoCar(storage: RepoStorage): AsyncIterable<Uint8Array>
export function exportRepoCar(storage: RepoBlockSource, commitCid: Cid): AsyncIterable<Uint8Array>
export async function* exportRepoCar(
  storage: RepoBlockSource,
  commitCid?: Cid,
): AsyncIterable<Uint8Array> {
  let root = commitCid
  if (root === undefined) {
    root = 'getRoot' in storage ? ((await storage.getRoot()) ?? undefined) : undefined
    if (root === undefined) throw new EmptyRepoError()
  }
  yield* writeCarStream(root, repoBlocks(storage, root))
}

export interface WriteCarOptions {
  /** End `destination` when the CAR is written (default true; false for process.stdout). */
  end?: boolean
}

/**
 * Writes a byte stream (such as exportRepoCar's) to a Writable, waiting for it to drain
 * whenever it is full. Resolves with the number of bytes written.
 */
export async function writeCarTo(
  car: AsyncIterable<Uint8Array>,
  destination: Writable,
  options: WriteCarOptions = {},
): Promise<number> {
  let written = 0
  async function* counted() {
    for await (const chunk of car) {
      written += chunk.byteLength
      yield chunk
    }
  }
  await pipeline(Readable.from(counted(), { objectMode: false }), destination, {
    end: options.end ?? true,
  })
  return written
}
