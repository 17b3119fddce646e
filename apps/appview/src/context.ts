// The AppView's composition root: every service is built here, once, from config, and
// handed to routes (as the reference PDS's AppContext is). Tests replace parts through
// AppViewOverrides rather than reaching into modules.
import { join } from 'node:path'
import {
  createGuardedFetch,
  createIdentityResolver,
  createRedirectCheck,
  type GuardedFetch,
  type IdentityResolver,
  type LookupAll,
  type RedirectCheck,
  type ResolveTxt,
} from '@atcr/core/identity'
import { type Logger, subsystemLogger } from '@atcr/core/log'
import { ServiceMetrics, withRequestId } from '@atcr/core/metrics'
import { type AuthServices, buildAuthServices } from './auth/index.ts'
import type { AppViewConfig } from './config.ts'
import { type AppViewDatabase, openAppViewDatabase } from './db/index.ts'
import { IndexService } from './ingest/index-service.ts'
import { IngestService } from './ingest/ingest-service.ts'
import { PdsReader } from './records/pds-reader.ts'
import { Registry } from './registry/registry.ts'
import { BrowseStore } from './web/browse-store.ts'
import { ImageConfigs } from './web/image-config.ts'

/** What every part of the AppView shares. */
export interface AppViewBase {
  config: AppViewConfig
  logger: Logger
  db: AppViewDatabase
  /** Every outbound request goes through it: in production mode, https and public addresses only. */
  fetch: GuardedFetch
  /** Where a hold's redirect may send clients: in production mode, public https addresses only. */
  clientRedirects: RedirectCheck
  identity: IdentityResolver
  /** Milliseconds since the epoch; tests move it forward instead of sleeping. */
  now: () => number
  /** Prometheus metrics, served by the metrics listener when one is configured. */
  metrics: ServiceMetrics
}

/** Every service but the registry (which is built from these). */
export interface AppViewServices extends AppViewBase, AuthServices {
  /** The network index: its single write entry point and what it counts. */
  index: IndexService
  /** The indexer: consumers of the configured sources (under the lease), backfills. */
  ingest: IngestService
}

/** What the web pages read: the index, and image configs from the holds. */
export interface WebServices {
  browse: BrowseStore
  configs: ImageConfigs
}

export interface AppViewContext extends AppViewServices {
  registry: Registry
  web: WebServices
}

/** Name resolution in place of the system's (tests: `@atcr/testkit` staticDns). */
export interface DnsOverrides {
  lookup?: LookupAll
  resolveTxt?: ResolveTxt
}

/** What tests may replace. */
export interface AppViewOverrides {
  dns?: DnsOverrides
  now?: () => number
}

export async function createAppViewContext(
  config: AppViewConfig,
  logger: Logger,
  overrides: AppViewOverrides = {},
): Promise<AppViewContext> {
  const mode = config.server.mode
  const dns = overrides.dns ?? {}
  // Outbound calls carry the id of the request they serve (the hold logs it too).
  const fetch = withRequestId(createGuardedFetch({ mode, lookup: dns.lookup }))
  const metrics = new ServiceMetrics()
  const identity = createIdentityResolver({
    mode,
    plcUrl: config.identity.plc_directory_url,
    fetch,
    resolveTxt: dns.resolveTxt,
    handleResolver: config.identity.handle_resolver_url ?? undefined,
    cacheTtlMs: config.identity.cache_ttl * 1000,
    cacheCounter: (cache) => metrics.cacheCounter(cache),
  })
  let db: AppViewDatabase | undefined
  try {
    db = await openAppViewDatabase({
      url: config.database.url,
      sqlitePath: join(config.server.data_dir, 'appview.sqlite'),
      maxConnections: config.database.max_connections,
    })
    const base: AppViewBase = {
      config,
      logger,
      db,
      fetch,
      clientRedirects: createRedirectCheck({ mode, lookup: dns.lookup }),
      identity,
      now: overrides.now ?? Date.now,
      metrics,
    }
    const cacheCounter = (cache: string) => metrics.cacheCounter(cache)
    const index = new IndexService({
      cacheCounter,
      db,
      resolveAccount: (did) => identity.resolveIdentity(did),
      logger: subsystemLogger(logger, 'index'),
      now: base.now,
    })
    let registry: Registry | undefined
    const ingest = new IngestService({
      cacheCounter,
      config,
      db,
      index,
      identity,
      reader: new PdsReader(fetch, {
        maxBlobBytes: config.registry.max_manifest_size,
        cacheCounter,
      }),
      forgetDid: (did) => registry?.holds.forget(did),
      fetch,
      logger: subsystemLogger(logger, 'ingest'),
      now: base.now,
    })
    const services: AppViewServices = {
      ...base,
      ...(await buildAuthServices(base, subsystemLogger(logger, 'auth'))),
      index,
      ingest,
    }
    registry = new Registry(services)
    const web = { browse: new BrowseStore(db), configs: new ImageConfigs(registry) }
    return { ...services, registry, web }
  } catch (error) {
    await identity.close()
    await db?.close()
    await fetch.close()
    throw error
  }
}

export async function closeAppViewContext(ctx: AppViewContext): Promise<void> {
  await ctx.ingest.close()
  await ctx.registry.close()
  await ctx.index.settled()
  await ctx.pdsSessions.close()
  await ctx.identity.close()
  await ctx.db.close()
  await ctx.fetch.close()
}
