import type { Cid, LexMap } from '@atproto/lex-data'
import { BlockMap, blocksToCarFile, type CommitData } from '@atproto/repo'

/** The kinds of events the firehose carries, as stored in `repo_seq.event_type`. */
export type SeqEventType = 'commit' | 'sync' | 'identity' | 'account'

/** One record operation of a #commit event. */
export interface CommitEventOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: Cid | null
  /** The record's CID before this commit, for updates and deletes. */
  prev?: Cid
}

/**
 * Beyond these a commit goes out as a #sync event instead of a #commit (relays refuse
 * larger #commit events and fetch the repo instead), as the sync spec asks.
 */
const MAX_COMMIT_OPS = 200
const MAX_COMMIT_BLOCKS_BYTES = 2_000_000

/** Whether a commit of this many writes may go out as a #commit event (and so needs proofs). */
export function fitsCommitEvent(opCount: number): boolean {
  return opCount <= MAX_COMMIT_OPS
}

/** An event's type and body without `seq` and `time`, which the sequencer adds. */
export interface PendingEvent {
  type: SeqEventType
  body: LexMap
}

/** A #commit event: the commit, the changed MST nodes and new records, and the ops. */
export async function commitEvent(
  did: string,
  commit: CommitData,
  ops: CommitEventOp[],
  prevData: Cid | null,
): Promise<PendingEvent> {
  if (!fitsCommitEvent(ops.length)) return syncEvent(did, commit)
  const blocks = new BlockMap()
  blocks.addMap(commit.newBlocks)
  blocks.addMap(commit.relevantBlocks)
  const car = await blocksToCarFile(commit.cid, blocks)
  if (car.byteLength > MAX_COMMIT_BLOCKS_BYTES) return syncEvent(did, commit)
  const body: LexMap = {
    repo: did,
    commit: commit.cid,
    rev: commit.rev,
    since: commit.since,
    blocks: car,
    ops: ops.map(({ action, path, cid, prev }) =>
      prev === undefined ? { action, path, cid } : { action, path, cid, prev },
    ),
    blobs: [],
    // Deprecated by the sync spec but still required by its lexicon.
    rebase: false,
    tooBig: false,
  }
  if (prevData) body.prevData = prevData
  return { type: 'commit', body }
}

/** A #sync event: the new head only, telling consumers to re-fetch the repo. */
export async function syncEvent(did: string, commit: CommitData): Promise<PendingEvent> {
  const commitBytes = commit.newBlocks.get(commit.cid) ?? commit.relevantBlocks.get(commit.cid)
  if (!commitBytes) throw new Error('commit block missing from commit data')
  const blocks = new BlockMap()
  blocks.set(commit.cid, commitBytes)
  return {
    type: 'sync',
    body: { did, rev: commit.rev, blocks: await blocksToCarFile(commit.cid, blocks) },
  }
}

/**
 * An #identity event: consumers should re-resolve the DID (document, handle, key). The
 * handle is the one the hold claims, when it has one.
 */
export function identityEvent(did: string, handle?: string | null): PendingEvent {
  return { type: 'identity', body: handle ? { did, handle } : { did } }
}

/** An #account event: the hold's repo is active. */
export function accountEvent(did: string, active = true): PendingEvent {
  return { type: 'account', body: { did, active } }
}
