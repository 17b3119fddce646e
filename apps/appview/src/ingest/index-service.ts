// The network index as the rest of the AppView sees it (`ctx.index`): every write goes
// through `apply` (or `applyBatch`, which also moves a consumer's cursor in the same
// transaction), outcomes are counted, and accounts seen for the first time get their handle
// and PDS from the identity resolver in the background.
import { engineOf } from '@atcr/core/database'
import { type CacheCounter, TtlCache } from '@atcr/core/identity'
import { manifestRkey, NSID, repoPageRkey, SELF_RKEY, tagRkey } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import { sql } from 'kysely'
import type { AppViewDatabase } from '../db/index.ts'
import type { IndexAccountTable } from '../db/schema.ts'
import { type ApplyOutcome, applyRecord, type RecordChange } from './apply.ts'

export type { ApplyOutcome, RecordChange } from './apply.ts'

/** How many changes of each outcome this instance applied since it started. */
export type IndexCounts = Record<ApplyOutcome, number>

export interface IndexServiceOptions {
  /** Counts the hits and misses of the `account_check` cache (metrics). */
  cacheCounter?: (cache: 'account_check') => CacheCounter
  db: AppViewDatabase
  /** Resolves a DID to its handle (verified, when it is) and PDS. */
  resolveAccount: (did: string) => Promise<{ handle: string | undefined; pdsEndpoint: string }>
  logger: Logger
  now: () => number
}

function emptyCounts(): IndexCounts {
  return { indexed: 0, deleted: 0, invalid: 0, ignored: 0 }
}

const ACCOUNT_CHECK_TTL_MS = 10 * 60_000
const MAX_ACCOUNT_LOOKUPS = 32

export class IndexService {
  readonly #db: AppViewDatabase
  readonly #resolveAccount: IndexServiceOptions['resolveAccount']
  readonly #logger: Logger
  readonly #now: () => number
  readonly #counts: IndexCounts = emptyCounts()
  readonly #byCollection = new Map<string, IndexCounts>()
  // Accounts whose row was checked (or is being filled in) recently: not looked up again.
  readonly #checked: TtlCache<true>
  readonly #lookups = new Set<Promise<void>>()

  constructor(options: IndexServiceOptions) {
    this.#db = options.db
    this.#resolveAccount = options.resolveAccount
    this.#logger = options.logger
    this.#now = options.now
    this.#checked = new TtlCache({
      ttlMs: ACCOUNT_CHECK_TTL_MS,
      maxEntries: 10_000,
      counter: options.cacheCounter?.('account_check'),
    })
  }

  /** The single write entry point: one record change, applied at once. */
  async apply(change: RecordChange): Promise<ApplyOutcome> {
    const outcome = await applyRecord(this.#db.db, change, this.#now())
    this.#settled(change, outcome)
    return outcome
  }

  /**
   * Several changes and, with `cursor`, the consumer's position after them, in one
   * transaction: a consumer that stops halfway resumes exactly where the index stands. A
   * position at or before the stored one was applied already (by an instance that lost the
   * lease and has not noticed yet, say): its changes are skipped ('ignored'), so the index
   * never goes back to older records.
   */
  async applyBatch(
    changes: RecordChange[],
    cursor?: { source: string; cursor: number },
  ): Promise<ApplyOutcome[]> {
    const now = this.#now()
    const outcomes = await this.#db.db.transaction().execute(async (trx) => {
      if (cursor) {
        let stored = trx
          .selectFrom('ingest_cursor')
          .select('cursor')
          .where('source', '=', cursor.source)
        // SQLite runs one write transaction at a time; PostgreSQL locks the row.
        if (this.#db.engine === 'postgres') stored = stored.forUpdate()
        const row = await stored.executeTakeFirst()
        if (row && Number(row.cursor) >= cursor.cursor) {
          return changes.map((): ApplyOutcome => 'ignored')
        }
      }
      const results: ApplyOutcome[] = []
      for (const change of changes) results.push(await applyRecord(trx, change, now))
      if (cursor) {
        await trx
          .insertInto('ingest_cursor')
          .values({ source: cursor.source, cursor: cursor.cursor, updated_at: now })
          .onConflict((c) =>
            c.column('source').doUpdateSet({ cursor: cursor.cursor, updated_at: now }),
          )
          .execute()
      }
      return results
    })
    for (const [i, outcome] of outcomes.entries()) this.#settled(changes[i]!, outcome)
    return outcomes
  }

  /** Where a consumer of `source` stopped (null: never started). */
  async cursor(source: string): Promise<number | null> {
    const row = await this.#db.db
      .selectFrom('ingest_cursor')
      .select('cursor')
      .where('source', '=', source)
      .executeTakeFirst()
    return row ? Number(row.cursor) : null
  }

  /** An account's handle and PDS as just learned (an #identity event, a resolution). */
  async setAccount(did: string, account: { handle: string | null; pds: string | null }) {
    const now = this.#now()
    const row = { handle: account.handle, pds_endpoint: account.pds, indexed_at: now }
    await this.#db.db
      .insertInto('index_account')
      .values({ did, auto_remove_untagged: 0, ...row })
      .onConflict((c) => c.column('did').doUpdateSet(row))
      .execute()
    this.#checked.set(did, true)
  }

  async account(did: string): Promise<IndexAccountTable | null> {
    const row = await this.#db.db
      .selectFrom('index_account')
      .selectAll()
      .where('did', '=', did)
      .executeTakeFirst()
    return row ?? null
  }

  async hasAccount(did: string): Promise<boolean> {
    return (await this.account(did)) !== null
  }

  /** The record keys of a user's collection that the index holds rows for. */
  async recordKeys(did: string, collection: string): Promise<string[]> {
    const db = this.#db.db
    switch (collection) {
      case NSID.manifest: {
        const rows = db.selectFrom('index_manifest').select('digest').where('did', '=', did)
        return (await rows.execute()).map((r) => manifestRkey(r.digest))
      }
      case NSID.tag: {
        const rows = db.selectFrom('index_tag').select(['repository', 'tag']).where('did', '=', did)
        return (await rows.execute()).map((r) => tagRkey(r.repository, r.tag))
      }
      case NSID.repoPage: {
        const rows = db.selectFrom('index_repo_page').select('repository').where('did', '=', did)
        return (await rows.execute()).map((r) => repoPageRkey(r.repository))
      }
      case NSID.sailorStar: {
        const rows = db.selectFrom('index_star').select('rkey').where('did', '=', did)
        return (await rows.execute()).map((r) => r.rkey)
      }
      case NSID.sailorProfile:
        return (await this.account(did))?.default_hold ? [SELF_RKEY] : []
      default:
        return []
    }
  }

  /** A tag's manifest digest and when it last moved. */
  async tag(
    did: string,
    repository: string,
    tag: string,
  ): Promise<{ digest: string; created_at: string } | null> {
    const row = await this.#db.db
      .selectFrom('index_tag')
      .select(['digest', 'created_at'])
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('tag', '=', tag)
      .executeTakeFirst()
    return row ?? null
  }

  /** Tags of a repository in code point order, after `after`, at most `limit`. */
  async tags(
    did: string,
    repository: string,
    options: { after?: string; limit?: number } = {},
  ): Promise<{ tag: string; digest: string; created_at: string }[]> {
    let query = this.#db.db
      .selectFrom('index_tag')
      .select(['tag', 'digest', 'created_at'])
      .where('did', '=', did)
      .where('repository', '=', repository)
      .orderBy(this.#codePoint('tag'))
    if (options.after !== undefined) query = query.where(this.#codePoint('tag'), '>', options.after)
    if (options.limit !== undefined) query = query.limit(options.limit)
    return query.execute()
  }

  /** Every tag of the owner (all repositories), for owner-wide scans. */
  async ownerTags(did: string) {
    return this.#db.db
      .selectFrom('index_tag')
      .select(['repository', 'tag', 'digest', 'created_at'])
      .where('did', '=', did)
      .execute()
  }

  /** A manifest record as stored (JSON), by its record digest. */
  async manifestRecord(did: string, digest: string): Promise<Record<string, unknown> | null> {
    const row = await this.#db.db
      .selectFrom('index_manifest')
      .select('record')
      .where('did', '=', did)
      .where('digest', '=', digest)
      .executeTakeFirst()
    return row ? (JSON.parse(row.record) as Record<string, unknown>) : null
  }

  /** The manifest records of the owner, or of one of their repositories. */
  async manifestRecords(did: string, repository?: string): Promise<Record<string, unknown>[]> {
    let query = this.#db.db.selectFrom('index_manifest').select('record').where('did', '=', did)
    if (repository !== undefined) query = query.where('repository', '=', repository)
    return (await query.execute()).map((r) => JSON.parse(r.record) as Record<string, unknown>)
  }

  /**
   * `/v2/_catalog` names of every indexed repository (`<handle>/<repository>`, or the DID
   * spelled with dashes when the handle is unknown), in code point order after `last`.
   */
  async catalog(last: string | undefined, limit: number | undefined): Promise<string[]> {
    const db = this.#db.db
    const names = db
      .selectFrom('index_manifest as m')
      .leftJoin('index_account as a', 'a.did', 'm.did')
      .select(
        sql<string>`coalesce(a.handle, replace(m.did, ':', '-')) || '/' || m.repository`.as('name'),
      )
      .distinct()
    let query = db.selectFrom(names.as('n')).select('n.name').orderBy(this.#codePoint('n.name'))
    if (last !== undefined) query = query.where(this.#codePoint('n.name'), '>', last)
    if (limit !== undefined) query = query.limit(limit)
    return (await query.execute()).map((r) => r.name)
  }

  /** Whether an instance holds the ingest lease now (a consumer is live somewhere). */
  async consumerLive(leaseName: string): Promise<boolean> {
    const row = await this.#db.db
      .selectFrom('ingest_lease')
      .select('expires_at')
      .where('name', '=', leaseName)
      .executeTakeFirst()
    return row !== undefined && Number(row.expires_at) >= this.#now()
  }

  // OCI lists sort by code point; PostgreSQL's default collation may not.
  #codePoint(column: string) {
    return engineOf(this.#db.db as never) === 'postgres'
      ? sql`${sql.ref(column)} collate "C"`
      : sql`${sql.ref(column)}`
  }

  /** Marks every record of the account as read from its PDS now. */
  async setBackfilled(did: string, at: number): Promise<void> {
    await this.#db.db
      .updateTable('index_account')
      .set({ backfilled_at: at })
      .where('did', '=', did)
      .execute()
  }

  /** Changes applied since start, by outcome (`invalid`: skipped, refused by its lexicon). */
  get counts(): Readonly<IndexCounts> {
    return { ...this.#counts }
  }

  /** The same, for one collection. */
  countsOf(collection: string): Readonly<IndexCounts> {
    return { ...(this.#byCollection.get(collection) ?? emptyCounts()) }
  }

  /** Waits for account lookups in flight (on close, and in tests). */
  async settled(): Promise<void> {
    while (this.#lookups.size > 0) await Promise.allSettled([...this.#lookups])
  }

  #settled(change: RecordChange, outcome: ApplyOutcome): void {
    this.#counts[outcome]++
    if (outcome !== 'ignored') {
      const counts = this.#byCollection.get(change.collection) ?? emptyCounts()
      counts[outcome]++
      this.#byCollection.set(change.collection, counts)
    }
    if (outcome === 'invalid') {
      this.#logger.info(
        { did: change.did, collection: change.collection, rkey: change.rkey },
        'skipped a record that does not match its lexicon',
      )
    }
    if (outcome === 'indexed') this.#fillAccount(change.did)
  }

  /** Looks up the handle and PDS of an account whose row lacks them (bounded, background). */
  #fillAccount(did: string): void {
    if (this.#checked.get(did) || this.#lookups.size >= MAX_ACCOUNT_LOOKUPS) return
    this.#checked.set(did, true)
    const lookup = (async () => {
      const row = await this.#db.db
        .selectFrom('index_account')
        .select('pds_endpoint')
        .where('did', '=', did)
        .executeTakeFirst()
      if (!row || row.pds_endpoint !== null) return
      const identity = await this.#resolveAccount(did)
      await this.setAccount(did, { handle: identity.handle ?? null, pds: identity.pdsEndpoint })
    })()
      .catch((error: unknown) => {
        this.#checked.delete(did)
        this.#logger.debug({ err: error, did }, 'could not resolve an indexed account')
      })
      .finally(() => this.#lookups.delete(lookup))
    this.#lookups.add(lookup)
  }
}
