import type { AddressInfo } from 'node:net'
import { closeWithGrace } from '@atcr/core/lifecycle'
import { createLogger, type Logger } from '@atcr/core/log'
import { type MetricsListener, startMetricsListener } from '@atcr/core/metrics'
import type { FastifyInstance } from 'fastify'
import { bootstrapRecords } from './bootstrap.ts'
import { checkServeConfig, type HoldConfig } from './config.ts'
import { closeHoldContext, createHoldContext, type HoldContext } from './context.ts'
import { type DataDirLock, lockDataDir } from './data-dir-lock.ts'
import { buildServer } from './server.ts'

export { type HoldConfig, holdConfig } from './config.ts'
export type { HoldContext } from './context.ts'

export interface HoldOptions {
  logger?: Logger
}

/** A hold service: create (identity, repo, records), start (listen), destroy. */
export class Hold {
  readonly ctx: HoldContext
  readonly app: FastifyInstance
  private readonly lock: DataDirLock
  /** The Prometheus listener, when metrics.port is set (after start). */
  metricsListener: MetricsListener | undefined

  private constructor(ctx: HoldContext, app: FastifyInstance, lock: DataDirLock) {
    this.ctx = ctx
    this.app = app
    this.lock = lock
  }

  static async create(config: HoldConfig, options: HoldOptions = {}): Promise<Hold> {
    const logger = options.logger ?? createLogger({ level: config.log.level, name: 'atcr-hold' })
    checkServeConfig(config)
    const lock = await lockDataDir(config.server.data_dir)
    let ctx: HoldContext | undefined
    try {
      ctx = await createHoldContext(config, logger)
      await bootstrapRecords(ctx.repo, config, ctx.identity)
      return new Hold(ctx, await buildServer(ctx), lock)
    } catch (error) {
      if (ctx) await closeHoldContext(ctx)
      await lock.release()
      throw error
    }
  }

  get did(): string {
    return this.ctx.identity.did
  }

  /** Listens on the configured host and port; returns the bound address as a URL. */
  async start(): Promise<string> {
    const metrics = this.ctx.config.metrics
    if (metrics.port !== null) {
      this.metricsListener = await startMetricsListener(this.ctx.metrics, {
        host: metrics.host,
        port: metrics.port,
      })
    }
    await this.app.listen({ host: this.ctx.config.server.host, port: this.ctx.config.server.port })
    const { address, port } = this.app.server.address() as AddressInfo
    const host = address.includes(':') ? `[${address}]` : address
    this.ctx.logger.info({ did: this.did, url: this.ctx.identity.publicUrl }, 'hold started')
    return `http://${host}:${port}`
  }

  async destroy(): Promise<void> {
    await closeWithGrace(this.app, this.ctx.config.server.shutdown_grace * 1000)
    await this.metricsListener?.close()
    await closeHoldContext(this.ctx)
    await this.lock.release()
  }
}
