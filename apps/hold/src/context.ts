import { hkdfSync } from 'node:crypto'
import { join } from 'node:path'
import { createIdentityResolver, type IdentityResolver } from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import { ServiceMetrics } from '@atcr/core/metrics'
import { VerifiedSignatures } from '@atcr/core/service-auth'
import { type AdminServices, createAdminServices } from './admin/services.ts'
import type { HoldConfig } from './config.ts'
import { type HoldDatabase, openDatabase } from './db/index.ts'
import { GcRunner } from './gc/runner.ts'
import { type HoldIdentity, loadHoldIdentity } from './identity.ts'
import { type HoldRepo, openHoldRepo } from './pds/index.ts'
import { withRecordLock } from './record-lock.ts'
import { StatsCounter } from './stats/counter.ts'
import {
  createStorageDriver,
  type StorageConfig,
  type StorageDriver,
  StorageUrlSigner,
} from './storage/index.ts'
import { UploadBudget } from './uploads/limits.ts'

/** Everything the hold's routes and commands share, built once from config. */
export interface HoldContext {
  config: HoldConfig
  logger: Logger
  identity: HoldIdentity
  db: HoldDatabase
  repo: HoldRepo
  storage: StorageDriver
  /** Resolves the DIDs of callers (service-token issuers) to their signing keys. */
  resolver: IdentityResolver
  /** Service tokens whose signatures were checked (callers reuse theirs until they expire). */
  verifiedSignatures: VerifiedSignatures
  /** Signs and checks the hold's own presigned storage URLs (filesystem storage). */
  storageUrls: StorageUrlSigner
  /** Pull counters, written to the stats records in batches. */
  counters: StatsCounter
  /** Garbage collections of the serving hold, one at a time (admin pages, GC route). */
  gc: GcRunner
  /** The owner's admin pages (null when admin.enabled is false). */
  admin: AdminServices | null
  /** The bytes of upload parts being received, per account (see uploads/limits.ts). */
  uploadBudget: UploadBudget
  /** Prometheus metrics, served by the metrics listener when one is configured. */
  metrics: ServiceMetrics
}

export async function createHoldContext(config: HoldConfig, logger: Logger): Promise<HoldContext> {
  const identity = await loadHoldIdentity(config, logger)
  const db = await openDatabase(join(config.server.data_dir, 'hold.sqlite'))
  try {
    const repo = await openHoldRepo({
      db,
      did: identity.did,
      signingKey: identity.signingKey,
      logger: logger.child({ subsystem: 'pds' }),
      identity: { document: identity.document, handle: identity.handle },
    })
    const storageUrls = new StorageUrlSigner({
      baseUrl: identity.publicUrl,
      key: await storageUrlKey(identity),
      ttlSeconds: config.storage.presign_ttl,
    })
    const storage = await createStorageDriver(storageConfig(config, storageUrls))
    const metrics = new ServiceMetrics()
    const resolver = createIdentityResolver({
      mode: config.server.mode,
      cacheCounter: (cache) => metrics.cacheCounter(cache),
      plcUrl: config.identity.plc_directory_url,
      ...(config.identity.handle_resolver_url
        ? { handleResolver: config.identity.handle_resolver_url }
        : {}),
    })
    const verifiedSignatures = new VerifiedSignatures({
      counter: metrics.cacheCounter('service_token_signature'),
    })
    const counters = new StatsCounter({
      repo,
      logger: logger.child({ subsystem: 'stats' }),
      intervalMs: config.stats.flush_interval * 1000,
    })
    const gc = new GcRunner({
      db: db.db,
      storage,
      gracePeriod: config.gc.grace_period,
      logger: logger.child({ subsystem: 'gc' }),
      lock: (task) => withRecordLock({ repo }, task),
    })
    const admin = config.admin.enabled
      ? await createAdminServices({
          config,
          db,
          identity,
          resolver,
          logger: logger.child({ subsystem: 'admin' }),
        })
      : null
    return {
      config,
      logger,
      identity,
      db,
      repo,
      storage,
      resolver,
      verifiedSignatures,
      storageUrls,
      counters,
      gc,
      admin,
      uploadBudget: new UploadBudget(),
      metrics,
    }
  } catch (error) {
    await db.close()
    throw error
  }
}

export async function closeHoldContext(ctx: HoldContext): Promise<void> {
  await ctx.gc.settled()
  await ctx.resolver.close()
  await ctx.counters.close().catch((err: unknown) => {
    ctx.logger.error({ err }, 'stats counters were not written')
  })
  await ctx.repo.close()
  await ctx.db.close()
  await ctx.storage.close()
}

/**
 * The key of the hold's presigned storage URLs, derived from its identity key: no other
 * secret to keep, and a rotated identity key retires every URL signed before.
 */
async function storageUrlKey(identity: HoldIdentity): Promise<Uint8Array> {
  const secret = await identity.signingKey.export()
  return new Uint8Array(hkdfSync('sha256', secret, '', 'atcr-hold presigned storage urls', 32))
}

/**
 * The storage driver settings of a config (the server and offline commands such as gc);
 * `signer` lets the filesystem driver presign reads the hold then serves.
 */
export function storageConfig(config: HoldConfig, signer?: StorageUrlSigner): StorageConfig {
  const { storage } = config
  if (storage.driver === 'filesystem') {
    return {
      driver: 'filesystem',
      root: storage.filesystem.root_dir ?? join(config.server.data_dir, 'blobs'),
      ...(signer ? { signer } : {}),
    }
  }
  const { s3 } = storage
  return {
    driver: 's3',
    bucket: s3.bucket,
    region: s3.region,
    endpoint: s3.endpoint ?? undefined,
    publicEndpoint: s3.public_endpoint ?? undefined,
    forcePathStyle: s3.force_path_style,
    credentials:
      s3.access_key_id && s3.secret_access_key
        ? { accessKeyId: s3.access_key_id, secretAccessKey: s3.secret_access_key }
        : undefined,
    prefix: s3.prefix || undefined,
    presignTtl: storage.presign_ttl,
    connectTimeoutMs: s3.connect_timeout * 1000,
    requestTimeoutMs: s3.request_timeout * 1000,
  }
}
