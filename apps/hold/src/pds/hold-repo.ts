import type { Keypair } from '@atproto/crypto'
import type { Logger } from 'pino'
import type { HoldDatabase } from '../db/index.ts'
import { RepoReader } from './reader.ts'
import { Sequencer } from './sequencer.ts'
import { BlobStore } from './storage/blob-store.ts'
import { type PublishedIdentity, RepoWriter } from './writer.ts'

export interface OpenHoldRepoOptions {
  /** The hold's database, opened (and migrated) by `openDatabase`. */
  db: HoldDatabase
  /** The hold's DID: the repo's DID, which signs its commits. */
  did: string
  /** The key of the DID document's `#atproto` verification method. */
  signingKey: Keypair
  logger?: Logger
  /** How often waiting subscribers look for events another process committed. */
  pollMs?: number
  /**
   * The identity the hold publishes: an #identity event goes out when it differs from
   * the one last announced (offline commands leave it out).
   */
  identity?: PublishedIdentity
}

/** The hold's embedded single-repo PDS: one writer, reads, blobs and the firehose log. */
export interface HoldRepo {
  did: string
  writer: RepoWriter
  reader: RepoReader
  blobs: BlobStore
  sequencer: Sequencer
  /** Waits for queued writes and ends firehose subscriptions; the database stays open. */
  close(): Promise<void>
}

/** Opens the hold's repo, creating it (first commit) when the database has none. */
export async function openHoldRepo(opts: OpenHoldRepoOptions): Promise<HoldRepo> {
  const { db, did, signingKey, logger } = opts
  const sequencer = new Sequencer(db.db, { pollMs: opts.pollMs })
  await sequencer.init()
  const { identity } = opts
  const writer = new RepoWriter({ db: db.db, did, signingKey, sequencer, logger, identity })
  await writer.init()
  if (identity) await writer.announceIdentity(identity)
  return {
    did,
    writer,
    reader: new RepoReader(db, did),
    blobs: new BlobStore(db.db),
    sequencer,
    async close() {
      await writer.idle()
      sequencer.close()
    },
  }
}
