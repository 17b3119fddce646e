// The indexer (`ctx.ingest`): the configured sources' consumers, run only while this
// instance holds the ingest lease; identity changes; backfills of one account from its PDS;
// and whether the index may answer for an account (see `authoritative`).

import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { type CacheCounter, type IdentityResolver, TtlCache } from '@atcr/core/identity'
import { NSID } from '@atcr/core/lexicons'
import type { Logger } from '@atcr/core/log'
import { IdResolver } from '@atproto/identity'
import type { AppViewConfig } from '../config.ts'
import type { AppViewDatabase } from '../db/index.ts'
import type { PdsReader } from '../records/pds-reader.ts'
import { BSKY_PROFILE, type RecordChange } from './apply.ts'
import { type Consumer, websocketUrl } from './consumer.ts'
import { BoundedDidCache } from './did-cache.ts'
import { FirehoseConsumer } from './firehose.ts'
import type { IndexService } from './index-service.ts'
import { JetstreamConsumer } from './jetstream.ts'
import { IngestLease } from './lease.ts'

/** Collections of a user's own repository that a backfill reads. */
export const ACCOUNT_RECORD_COLLECTIONS = [
  NSID.sailorProfile,
  NSID.manifest,
  NSID.tag,
  NSID.repoPage,
  NSID.sailorStar,
] as const

const LEASE_NAME = 'ingest'
const BACKFILL_BATCH = 100
const MAX_BACKFILLS = 4
const AUTHORITY_TTL_MS = 2000
// DID documents of commit authors kept for signature checks (about 2 KiB each).
const DID_CACHE_ENTRIES = 10_000

export interface SourceStatus {
  source: string
  type: 'firehose' | 'jetstream'
  cursor: number | null
  /** How old the last applied event was when it was applied, in ms (null: none yet). */
  lagMs: number | null
  errors: number
}

export interface IngestServiceOptions {
  /** Counts the hits and misses of the `ingest_authority` cache (metrics). */
  cacheCounter?: (cache: 'ingest_authority') => CacheCounter
  config: AppViewConfig
  db: AppViewDatabase
  index: IndexService
  identity: IdentityResolver
  /** Reads of users' repositories (backfills). */
  reader: PdsReader
  /** Called when a DID's identity changed (the hold client forgets its endpoint). */
  forgetDid: (did: string) => void
  fetch: typeof globalThis.fetch
  logger: Logger
  now: () => number
}

export class IngestService {
  readonly lease: IngestLease
  readonly #options: IngestServiceOptions
  readonly #consumers: Consumer[]
  readonly #types: Map<Consumer, 'firehose' | 'jetstream'> = new Map()
  readonly #backfills = new Map<string, Promise<void>>()
  // Answers of `authoritative`, briefly: listings ask on every request.
  readonly #authority: TtlCache<boolean>
  #running = false
  #timer: NodeJS.Timeout | null = null
  #tick: Promise<void> = Promise.resolve()
  #closed = false

  constructor(options: IngestServiceOptions) {
    this.#options = options
    this.#authority = new TtlCache({
      ttlMs: AUTHORITY_TTL_MS,
      maxEntries: 10_000,
      counter: options.cacheCounter?.('ingest_authority'),
    })
    const { config } = options
    const ttlMs = config.ingest.lease_ttl * 1000
    this.lease = new IngestLease({
      db: options.db,
      name: LEASE_NAME,
      holder: `${hostname()}:${process.pid}:${randomUUID()}`,
      ttlMs,
      now: options.now,
    })
    const common = {
      index: options.index,
      onIdentity: (did: string) => this.#identityChanged(did),
      logger: options.logger,
      now: options.now,
      reconnectDelayMs: config.ingest.reconnect_delay * 1000,
    }
    // Commit signatures are checked against keys from the same PLC, through the guarded fetch.
    const idResolver = new IdResolver({
      plcUrl: config.identity.plc_directory_url,
      fetch: options.fetch,
      didCache: new BoundedDidCache({
        maxEntries: DID_CACHE_ENTRIES,
        staleTtlMs: config.identity.cache_ttl * 1000,
      }),
    })
    this.#consumers = config.ingest.sources.map((source) => {
      const consumer =
        source.type === 'firehose'
          ? new FirehoseConsumer({ ...common, url: source.url, idResolver, relay: source.relay })
          : new JetstreamConsumer({ ...common, url: source.url })
      this.#types.set(consumer, source.type)
      return consumer
    })
  }

  /** Starts competing for the lease (and consuming while holding it), when enabled. */
  start(): void {
    if (!this.#options.config.ingest.enabled || this.#consumers.length === 0) return
    const every = Math.max(1000, (this.#options.config.ingest.lease_ttl * 1000) / 3)
    const tick = () => {
      this.#tick = this.#tick
        .then(() => this.#renew())
        .catch((error: unknown) => {
          this.#options.logger.error({ err: error }, 'starting or stopping consumers failed')
        })
    }
    tick()
    this.#timer = setInterval(tick, every)
    this.#timer.unref()
  }

  /** Whether this instance is consuming now. */
  get consuming(): boolean {
    return this.#running
  }

  /** Each source's cursor, lag and error count (for metrics). */
  status(): SourceStatus[] {
    return this.#consumers.map((consumer) => ({
      source: consumer.source,
      type: this.#types.get(consumer)!,
      cursor: consumer.cursor,
      lagMs: consumer.lagMs,
      errors: consumer.errors,
    }))
  }

  /** The largest lag of the sources consumed here, in ms (null: none consumed here). */
  lagMs(): number | null {
    if (!this.#running) return null
    const lags = this.#consumers.map((c) => c.lagMs).filter((l): l is number => l !== null)
    return lags.length > 0 ? Math.max(...lags) : null
  }

  async #renew(): Promise<void> {
    if (this.#closed) return
    let held: boolean
    try {
      held = await this.lease.acquire()
    } catch (error) {
      this.#options.logger.error({ err: error }, 'renewing the ingest lease failed')
      held = false
    }
    if (held && !this.#running) {
      this.#running = true
      this.#options.logger.info({ holder: this.lease.holder }, 'took the ingest lease: consuming')
      try {
        for (const consumer of this.#consumers) await consumer.start()
      } catch (error) {
        // Tried again at the next renewal.
        this.#options.logger.error({ err: error }, 'starting the consumers failed')
        await this.#stopConsumers()
      }
    } else if (!held && this.#running) {
      this.#options.logger.warn('lost the ingest lease: stopped consuming')
      await this.#stopConsumers()
    }
  }

  async #stopConsumers(): Promise<void> {
    this.#running = false
    await Promise.all(this.#consumers.map((c) => c.stop()))
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#timer) clearInterval(this.#timer)
    await this.#tick
    await Promise.allSettled(this.#backfills.values())
    if (this.#running) {
      await this.#stopConsumers()
      await this.lease.release().catch(() => {})
    }
  }

  /**
   * A DID's identity changed (#identity): its cached DID document and hold endpoint are
   * dropped, so the next request follows a moved PDS or hold; an indexed account gets its
   * new handle and PDS.
   */
  async #identityChanged(did: string): Promise<void> {
    this.#options.identity.invalidate(did)
    this.#options.forgetDid(did)
    if (!(await this.#options.index.hasAccount(did))) return
    const identity = await this.#options.identity.resolveIdentity(did)
    await this.#options.index.setAccount(did, {
      handle: identity.handle ?? null,
      pds: identity.pdsEndpoint,
    })
  }

  /**
   * Reads every io.atcr.* record of the account from its PDS into the index, removes what
   * the index has that the PDS no longer does, and records when (index_account.backfilled_at).
   * One backfill per account at a time; a second call joins the first.
   */
  backfill(did: string): Promise<void> {
    const running = this.#backfills.get(did)
    if (running) return running
    const run = this.#backfill(did).finally(() => this.#backfills.delete(did))
    this.#backfills.set(did, run)
    return run
  }

  /** Starts a backfill in the background when few run (listings ask for one on a miss). */
  backfillSoon(did: string): void {
    if (this.#closed || this.#backfills.has(did) || this.#backfills.size >= MAX_BACKFILLS) return
    this.backfill(did).catch((error: unknown) => {
      this.#options.logger.warn({ err: error, did }, 'backfill failed')
    })
  }

  async #backfill(did: string): Promise<void> {
    const { identity, index, reader } = this.#options
    const startedAt = this.#options.now()
    const resolved = await identity.resolveIdentity(did)
    await index.setAccount(did, { handle: resolved.handle ?? null, pds: resolved.pdsEndpoint })
    for (const collection of ACCOUNT_RECORD_COLLECTIONS) {
      const listed = new Set<string>()
      let batch: RecordChange[] = []
      for await (const record of reader.listRecords(resolved.pdsEndpoint, did, collection)) {
        listed.add(record.rkey)
        batch.push({ did, collection, rkey: record.rkey, record: record.value })
        if (batch.length >= BACKFILL_BATCH) {
          await index.applyBatch(batch)
          batch = []
        }
      }
      const gone = (await index.recordKeys(did, collection)).filter((rkey) => !listed.has(rkey))
      batch.push(...gone.map((rkey) => ({ did, collection, rkey, record: null })))
      if (batch.length > 0) await index.applyBatch(batch)
    }
    const profile = await reader.getRecord(resolved.pdsEndpoint, did, BSKY_PROFILE, 'self')
    await index.apply({
      did,
      collection: BSKY_PROFILE,
      rkey: 'self',
      record: profile?.value ?? null,
    })
    await index.setBackfilled(did, startedAt)
    this.#authority.delete(did)
    this.#options.logger.info({ did }, 'backfilled an account')
  }

  /** Whether ingest is on and some instance consumes now (holds an unexpired lease). */
  async live(): Promise<boolean> {
    return this.#options.config.ingest.enabled && this.#options.index.consumerLive(LEASE_NAME)
  }

  /**
   * Whether the index holds every record of the account, so listings may come from it:
   * the account was backfilled, and since then a consumer has been live (the lease is held
   * by an instance, not expired) on a source that carries the account's repository (a
   * Jetstream or relay source, or the firehose of the account's own PDS).
   */
  async authoritative(did: string): Promise<boolean> {
    if (!this.#options.config.ingest.enabled) return false
    return this.#authority.getOrLoad(did, async () => {
      if (!(await this.live())) return false
      const account = await this.#options.index.account(did)
      if (account?.pds_endpoint && !this.#carries(account.pds_endpoint)) return false
      if (!account || account.backfilled_at === null) {
        // Asked about an account the index does not hold whole yet: read it in.
        this.backfillSoon(did)
        return false
      }
      return true
    })
  }

  #carries(pds: string): boolean {
    const origin = websocketUrl(pds)
    return this.#options.config.ingest.sources.some(
      (source) =>
        source.type === 'jetstream' ||
        (source.type === 'firehose' && (source.relay || websocketUrl(source.url) === origin)),
    )
  }
}
