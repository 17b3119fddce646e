import type { Keypair } from '@atproto/crypto'
import { encode } from '@atproto/lex-cbor'
import { cidForCbor, type LexMap, parseCid } from '@atproto/lex-data'
import { type CommitData, Repo } from '@atproto/repo'
import { isValidNsid, isValidRecordKey } from '@atproto/syntax'
import type { Kysely } from 'kysely'
import type { Logger } from 'pino'
import type { HoldSchema } from '../db/schema.ts'
import {
  ConcurrentWriteError,
  InvalidWriteError,
  RecordAlreadyExistsError,
  RecordNotFoundError,
} from './errors.ts'
import {
  accountEvent,
  type CommitEventOp,
  commitEvent,
  fitsCommitEvent,
  identityEvent,
  type PendingEvent,
  syncEvent,
} from './firehose/events.ts'
import { type EncodedWrite, formatCommit } from './format-commit.ts'
import { Mutex } from './mutex.ts'
import { Sequencer } from './sequencer.ts'
import { getAnnouncedIdentity, putAnnouncedIdentity } from './storage/identity-announced.ts'
import {
  cidsStillReferenced,
  deleteIndexedRecord,
  getIndexedCids,
  putIndexedRecord,
} from './storage/record-index.ts'
import { type RepoHead, SqlRepoStorage } from './storage/sql-repo-storage.ts'

/** One record change; `record` is stored as given (callers validate against lexicons). */
export type RecordWrite =
  | { action: 'create'; collection: string; rkey: string; record: LexMap }
  | { action: 'update'; collection: string; rkey: string; record: LexMap }
  | { action: 'delete'; collection: string; rkey: string }

/** A record to upsert with {@link RepoWriter.importRecords}. */
export interface ImportRecord {
  collection: string
  rkey: string
  value: LexMap
}

export interface AppliedWrite {
  action: 'create' | 'update' | 'delete'
  collection: string
  rkey: string
  uri: string
  /** The new record's CID; null for a delete. */
  cid: string | null
  /** The replaced record's CID, for updates and deletes. */
  prev: string | null
}

/** What a commit did: its CID and rev, the firehose seq of its event, and each write. */
export interface CommitResult {
  cid: string
  rev: string
  seq: number
  writes: AppliedWrite[]
}

export interface RepoWriterOptions {
  db: Kysely<HoldSchema>
  did: string
  signingKey: Keypair
  sequencer: Sequencer
  logger?: Logger
  /** The identity the hold publishes; a new repo records it as announced. */
  identity?: PublishedIdentity
}

/** The hold's DID document as it publishes it, and its handle (null for none). */
export interface PublishedIdentity {
  document: object
  handle: string | null
}

/**
 * The one way records change in the hold's repo. Every change is one signed commit,
 * stored with its blocks, head, record index and firehose event in one SQLite
 * transaction; subscribers hear of it only after that transaction commits. Writes are
 * serialized; a failure anywhere leaves the repo as it was.
 */
export class RepoWriter {
  readonly did: string
  private readonly db: Kysely<HoldSchema>
  private readonly signingKey: Keypair
  private readonly sequencer: Sequencer
  private readonly logger: Logger | undefined
  private readonly identity: PublishedIdentity | undefined
  private readonly mutex = new Mutex()

  constructor(opts: RepoWriterOptions) {
    this.db = opts.db
    this.did = opts.did
    this.signingKey = opts.signingKey
    this.sequencer = opts.sequencer
    this.logger = opts.logger
    this.identity = opts.identity
  }

  /**
   * Creates the repo with an empty first commit when the database has none (announcing
   * the identity and account on the firehose), and refuses a database of another DID.
   */
  async init(): Promise<void> {
    await this.mutex.run(async () => {
      const existing = await this.db.selectFrom('repo_root').select('did').execute()
      if (existing.some((r) => r.did === this.did)) return
      if (existing.length > 0) {
        throw new Error(
          `the database holds the repo of ${existing[0]?.did}, not of ${this.did}: refusing to open it`,
        )
      }
      const storage = new SqlRepoStorage(this.db, this.did)
      const commit = await Repo.formatInitCommit(storage, this.did, this.signingKey)
      const events: PendingEvent[] = [
        identityEvent(this.did, this.identity?.handle),
        accountEvent(this.did),
        await commitEvent(this.did, commit, [], null),
        await syncEvent(this.did, commit),
      ]
      const stored = await this.db.transaction().execute(async (trx) => {
        const trxStorage = new SqlRepoStorage(trx, this.did)
        if (await trxStorage.getHead()) throw new ConcurrentWriteError()
        await trxStorage.applyCommit(commit)
        if (this.identity) {
          await putAnnouncedIdentity(trx, this.did, JSON.stringify(this.identity.document))
        }
        return Sequencer.append(trx, events)
      })
      this.sequencer.announce(stored)
      this.logger?.info({ did: this.did, rev: commit.rev }, 'created the hold repo')
    })
  }

  /** Applies the writes as one commit. Creates need a free path, updates and deletes a record. */
  async applyWrites(writes: RecordWrite[]): Promise<CommitResult> {
    if (writes.length === 0) throw new InvalidWriteError('no writes to apply')
    return this.mutex.run(async () => {
      const prepared = await this.prepare(writes)
      const paths = prepared.map((w) => ({ collection: w.collection, rkey: w.rkey }))
      const current = await getIndexedCids(this.db, paths)
      for (const write of prepared) {
        const path = `${write.collection}/${write.rkey}`
        const cid = current.get(path)
        if (write.action === 'create' && cid) {
          throw new RecordAlreadyExistsError(this.uri(write.collection, write.rkey))
        }
        if (write.action !== 'create') {
          if (!cid) throw new RecordNotFoundError(this.uri(write.collection, write.rkey))
          write.prev = parseCid(cid)
        }
      }
      return this.commit(prepared)
    })
  }

  /**
   * Upserts every record in one commit: a create for a new path, an update for a changed
   * one; records identical to the stored ones are skipped. When the same path appears
   * more than once, the last one wins. Returns null (and commits nothing) when nothing
   * changed.
   */
  async importRecords(records: ImportRecord[]): Promise<CommitResult | null> {
    const byPath = new Map<string, ImportRecord>()
    for (const record of records) byPath.set(`${record.collection}/${record.rkey}`, record)
    return this.mutex.run(async () => {
      const prepared = await this.prepare(
        [...byPath.values()].map((r) => ({
          action: 'create' as const,
          collection: r.collection,
          rkey: r.rkey,
          record: r.value,
        })),
      )
      const current = await getIndexedCids(this.db, prepared)
      const changed: EncodedWrite[] = []
      for (const write of prepared) {
        const cid = current.get(`${write.collection}/${write.rkey}`)
        if (cid === undefined) {
          changed.push(write)
        } else if (cid !== write.cid?.toString()) {
          changed.push({ ...write, action: 'update', prev: parseCid(cid) })
        }
      }
      if (changed.length === 0) return null
      return this.commit(changed)
    })
  }

  /** Creates a record; fails with RecordAlreadyExists when the path holds one. */
  async createRecord(collection: string, rkey: string, record: LexMap): Promise<CommitResult> {
    return this.applyWrites([{ action: 'create', collection, rkey, record }])
  }

  /** Creates or replaces a record; null (no commit) when the stored record is identical. */
  async upsertRecord(
    collection: string,
    rkey: string,
    record: LexMap,
  ): Promise<CommitResult | null> {
    return this.importRecords([{ collection, rkey, value: record }])
  }

  /** Deletes a record; fails with RecordNotFound when there is none. */
  async deleteRecord(collection: string, rkey: string): Promise<CommitResult> {
    return this.applyWrites([{ action: 'delete', collection, rkey }])
  }

  /**
   * Sequences an #identity event when the DID document the hold publishes differs from
   * the one last announced (a new signing key, endpoint or handle: after a move, a key
   * rotation or a PLC update), and remembers it. Returns the event's seq, or null when
   * the identity is the one already announced.
   */
  async announceIdentity(identity: PublishedIdentity): Promise<number | null> {
    const document = JSON.stringify(identity.document)
    return this.mutex.run(async () => {
      const stored = await this.db.transaction().execute(async (trx) => {
        if ((await getAnnouncedIdentity(trx, this.did)) === document) return []
        await putAnnouncedIdentity(trx, this.did, document)
        return Sequencer.append(trx, [identityEvent(this.did, identity.handle)])
      })
      this.sequencer.announce(stored)
      const seq = stored[0]?.seq ?? null
      if (seq !== null) this.logger?.info({ did: this.did, seq }, 'announced a new identity')
      return seq
    })
  }

  /** Resolves once writes queued so far have finished. */
  async idle(): Promise<void> {
    await this.mutex.idle()
  }

  private uri(collection: string, rkey: string): string {
    return `at://${this.did}/${collection}/${rkey}`
  }

  /** Checks paths and encodes records, before anything is read or written. */
  private async prepare(writes: RecordWrite[]): Promise<EncodedWrite[]> {
    const seen = new Set<string>()
    const prepared: EncodedWrite[] = []
    for (const write of writes) {
      const { action, collection, rkey } = write
      if (!isValidNsid(collection)) throw new InvalidWriteError(`invalid collection: ${collection}`)
      if (!isValidRecordKey(rkey)) throw new InvalidWriteError(`invalid record key: ${rkey}`)
      const path = `${collection}/${rkey}`
      if (seen.has(path)) throw new InvalidWriteError(`more than one write to ${path}`)
      seen.add(path)
      if (write.action === 'delete') {
        prepared.push({ action, collection, rkey })
        continue
      }
      let bytes: Uint8Array
      try {
        bytes = encode(write.record)
      } catch (err) {
        throw new InvalidWriteError(`record ${path} is not valid atproto data`, { cause: err })
      }
      prepared.push({
        action,
        collection,
        rkey,
        record: write.record,
        bytes,
        cid: await cidForCbor(bytes),
      })
    }
    return prepared
  }

  /** Builds, signs and stores one commit of prepared, checked writes. */
  private async commit(writes: EncodedWrite[]): Promise<CommitResult> {
    const storage = new SqlRepoStorage(this.db, this.did)
    const head = await storage.getHead()
    if (!head) throw new Error('the hold repo is not initialized')
    const repo = await Repo.load(storage, head.cid)
    const prevData = repo.commit.data
    const commit = await formatCommit(repo, writes, this.signingKey, {
      proofs: fitsCommitEvent(writes.length),
    })
    const ops: CommitEventOp[] = writes.map((w) => ({
      action: w.action,
      path: `${w.collection}/${w.rkey}`,
      cid: w.cid ?? null,
      ...(w.prev ? { prev: w.prev } : {}),
    }))
    const event = await commitEvent(this.did, commit, ops, prevData)

    const stored = await this.db.transaction().execute(async (trx) => {
      const trxStorage = new SqlRepoStorage(trx, this.did)
      assertSameHead(await trxStorage.getHead(), head)
      for (const write of writes) {
        if (write.action === 'delete') {
          await deleteIndexedRecord(trx, write.collection, write.rkey)
        } else if (write.cid && write.record) {
          const { collection, rkey, record } = write
          await putIndexedRecord(
            trx,
            { collection, rkey, cid: write.cid.toString(), value: record },
            commit.rev,
          )
        }
      }
      await this.keepReferencedBlocks(trx, commit)
      await trxStorage.applyCommit(commit)
      return Sequencer.append(trx, [event])
    })
    this.sequencer.announce(stored)
    this.logger?.debug({ rev: commit.rev, ops: ops.length }, 'committed')
    return {
      cid: commit.cid.toString(),
      rev: commit.rev,
      seq: stored[0]?.seq ?? this.sequencer.head,
      writes: writes.map((w) => ({
        action: w.action,
        collection: w.collection,
        rkey: w.rkey,
        uri: this.uri(w.collection, w.rkey),
        cid: w.cid?.toString() ?? null,
        prev: w.prev?.toString() ?? null,
      })),
    }
  }

  /** Spares removed record blocks that another record (with the same content) still uses. */
  private async keepReferencedBlocks(trx: Kysely<HoldSchema>, commit: CommitData) {
    const removed = commit.removedCids.toList()
    if (removed.length === 0) return
    const referenced = await cidsStillReferenced(
      trx,
      removed.map((c) => c.toString()),
    )
    for (const cid of removed) {
      if (referenced.has(cid.toString())) commit.removedCids.delete(cid)
    }
  }
}

function assertSameHead(actual: RepoHead | null, expected: RepoHead): void {
  if (!actual?.cid.equals(expected.cid)) throw new ConcurrentWriteError()
}
