import { type Cid, parseCid } from '@atproto/lex-data'
import { BlockMap, type CarBlock, ReadableBlockstore } from '@atproto/repo'
import Database from 'better-sqlite3'
import { configureConnection } from '../../db/index.ts'
import type { RepoHead } from './sql-repo-storage.ts'

const PAGE = 500

interface BlockRow {
  cid: string
  repo_rev: string
  content: Uint8Array
}

/**
 * A consistent read-only view of the repo: its own SQLite connection inside a read
 * transaction, so that a long CAR export sees one head and all of its blocks even while
 * the writer commits (and drops replaced blocks) on the main connection. Close it when done.
 */
export class RepoSnapshot extends ReadableBlockstore {
  private readonly sqlite: Database.Database
  private readonly did: string
  private closed = false

  private constructor(sqlite: Database.Database, did: string) {
    super()
    this.sqlite = sqlite
    this.did = did
  }

  static open(path: string, did: string): RepoSnapshot {
    const sqlite = new Database(path, { readonly: true, fileMustExist: true })
    try {
      configureConnection(sqlite)
      sqlite.exec('BEGIN')
    } catch (err) {
      sqlite.close()
      throw err
    }
    return new RepoSnapshot(sqlite, did)
  }

  head(): RepoHead | null {
    const row = this.sqlite.prepare('SELECT cid, rev FROM repo_root WHERE did = ?').get(this.did) as
      | { cid: string; rev: string }
      | undefined
    return row ? { cid: parseCid(row.cid), rev: row.rev } : null
  }

  async getBytes(cid: Cid): Promise<Uint8Array | null> {
    const row = this.sqlite
      .prepare('SELECT content FROM repo_block WHERE cid = ?')
      .get(cid.toString()) as { content: Uint8Array } | undefined
    return row?.content ?? null
  }

  async has(cid: Cid): Promise<boolean> {
    return (await this.getBytes(cid)) !== null
  }

  async getBlocks(cids: Cid[]): Promise<{ blocks: BlockMap; missing: Cid[] }> {
    const blocks = new BlockMap()
    const missing: Cid[] = []
    for (const cid of cids) {
      const bytes = await this.getBytes(cid)
      if (bytes) blocks.set(cid, bytes)
      else missing.push(cid)
    }
    return { blocks, missing }
  }

  /** Every block, or only those added after the rev `since`, a page at a time. */
  async *blocks(since?: string): AsyncGenerator<CarBlock> {
    const first = this.sqlite.prepare(
      'SELECT cid, repo_rev, content FROM repo_block WHERE repo_rev > ? ORDER BY repo_rev, cid LIMIT ?',
    )
    const next = this.sqlite.prepare(
      'SELECT cid, repo_rev, content FROM repo_block WHERE (repo_rev, cid) > (?, ?) ORDER BY repo_rev, cid LIMIT ?',
    )
    let rows = first.all(since ?? '', PAGE) as BlockRow[]
    while (true) {
      for (const row of rows) yield { cid: parseCid(row.cid), bytes: row.content }
      const last = rows.at(-1)
      if (!last || rows.length < PAGE) return
      rows = next.all(last.repo_rev, last.cid, PAGE) as BlockRow[]
    }
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.sqlite.exec('COMMIT')
    } finally {
      this.sqlite.close()
    }
  }
}
