import { type Cid, parseCid } from '@atproto/lex-data'
import { BlockMap, type CommitData, ReadableBlockstore, type RepoStorage } from '@atproto/repo'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../../db/schema.ts'

const BATCH = 200

export interface RepoHead {
  cid: Cid
  rev: string
}

/**
 * The repo's blocks and head in SQLite, as @atproto/repo's `RepoStorage`. Bound to a
 * Kysely instance, which may be a transaction: the writer builds one per commit on its
 * transaction so that blocks, head, index and event are stored together.
 */
export class SqlRepoStorage extends ReadableBlockstore implements RepoStorage {
  readonly db: Kysely<HoldSchema>
  readonly did: string

  constructor(db: Kysely<HoldSchema>, did: string) {
    super()
    this.db = db
    this.did = did
  }

  async getHead(): Promise<RepoHead | null> {
    const row = await this.db
      .selectFrom('repo_root')
      .select(['cid', 'rev'])
      .where('did', '=', this.did)
      .executeTakeFirst()
    return row ? { cid: parseCid(row.cid), rev: row.rev } : null
  }

  async getRoot(): Promise<Cid | null> {
    return (await this.getHead())?.cid ?? null
  }

  async getBytes(cid: Cid): Promise<Uint8Array | null> {
    const row = await this.db
      .selectFrom('repo_block')
      .select('content')
      .where('cid', '=', cid.toString())
      .executeTakeFirst()
    return row ? row.content : null
  }

  async has(cid: Cid): Promise<boolean> {
    const row = await this.db
      .selectFrom('repo_block')
      .select('cid')
      .where('cid', '=', cid.toString())
      .executeTakeFirst()
    return row !== undefined
  }

  async getBlocks(cids: Cid[]): Promise<{ blocks: BlockMap; missing: Cid[] }> {
    const blocks = new BlockMap()
    for (let i = 0; i < cids.length; i += BATCH) {
      const batch = cids.slice(i, i + BATCH).map((c) => c.toString())
      const rows = await this.db
        .selectFrom('repo_block')
        .select(['cid', 'content'])
        .where('cid', 'in', batch)
        .execute()
      for (const row of rows) blocks.set(parseCid(row.cid), row.content)
    }
    return { blocks, missing: cids.filter((cid) => !blocks.has(cid)) }
  }

  async putBlock(cid: Cid, block: Uint8Array, rev: string): Promise<void> {
    const blocks = new BlockMap()
    blocks.set(cid, block)
    await this.putMany(blocks, rev)
  }

  async putMany(blocks: BlockMap, rev: string): Promise<void> {
    const rows = blocks.entries().map(({ cid, bytes }) => ({
      cid: cid.toString(),
      repo_rev: rev,
      size: bytes.byteLength,
      content: bytes,
    }))
    for (let i = 0; i < rows.length; i += BATCH) {
      await this.db
        .insertInto('repo_block')
        .values(rows.slice(i, i + BATCH))
        .onConflict((oc) => oc.column('cid').doNothing())
        .execute()
    }
  }

  async deleteMany(cids: Cid[]): Promise<void> {
    for (let i = 0; i < cids.length; i += BATCH) {
      const batch = cids.slice(i, i + BATCH).map((c) => c.toString())
      await this.db.deleteFrom('repo_block').where('cid', 'in', batch).execute()
    }
  }

  async updateRoot(cid: Cid, rev: string): Promise<void> {
    await this.db
      .insertInto('repo_root')
      .values({ did: this.did, cid: cid.toString(), rev, indexed_at: new Date().toISOString() })
      .onConflict((oc) =>
        oc.column('did').doUpdateSet({
          cid: cid.toString(),
          rev,
          indexed_at: new Date().toISOString(),
        }),
      )
      .execute()
  }

  /** Stores a commit's new blocks, drops its removed ones and moves the head. */
  async applyCommit(commit: CommitData): Promise<void> {
    await this.putMany(commit.newBlocks, commit.rev)
    await this.deleteMany(commit.removedCids.toList())
    await this.updateRoot(commit.cid, commit.rev)
  }
}
