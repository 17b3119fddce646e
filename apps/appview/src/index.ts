import type { AddressInfo } from 'node:net'
import { closeWithGrace } from '@atcr/core/lifecycle'
import { createLogger, type Logger } from '@atcr/core/log'
import { type MetricsListener, startMetricsListener } from '@atcr/core/metrics'
import type { FastifyInstance } from 'fastify'
import type { AppViewConfig } from './config.ts'
import {
  type AppViewContext,
  type AppViewOverrides,
  closeAppViewContext,
  createAppViewContext,
  type DnsOverrides,
} from './context.ts'
import { buildServer } from './server.ts'

export { type AppViewConfig, appviewConfig } from './config.ts'
export type { AppViewContext, AppViewOverrides } from './context.ts'

export interface AppViewOptions {
  logger?: Logger
  /** Tests: answer DNS (addresses, handle TXT records) without asking a name server. */
  dns?: DnsOverrides
  /** Tests: services replaced (see AppViewOverrides). */
  overrides?: Omit<AppViewOverrides, 'dns'>
}

/** The AppView service: create (database, keys, services), start (listen), destroy. */
export class AppView {
  readonly ctx: AppViewContext
  readonly app: FastifyInstance
  /** The Prometheus listener, when metrics.port is set (after start). */
  metricsListener: MetricsListener | undefined

  private constructor(ctx: AppViewContext, app: FastifyInstance) {
    this.ctx = ctx
    this.app = app
  }

  static async create(config: AppViewConfig, options: AppViewOptions = {}): Promise<AppView> {
    const logger = options.logger ?? createLogger({ level: config.log.level, name: 'atcr-appview' })
    const ctx = await createAppViewContext(config, logger, {
      ...options.overrides,
      ...(options.dns ? { dns: options.dns } : {}),
    })
    try {
      return new AppView(ctx, await buildServer(ctx))
    } catch (error) {
      await closeAppViewContext(ctx)
      throw error
    }
  }

  /** Listens on the configured host and port; returns the bound address as a URL. */
  async start(): Promise<string> {
    const { host, port } = this.ctx.config.server
    const metrics = this.ctx.config.metrics
    if (metrics.port !== null) {
      this.metricsListener = await startMetricsListener(this.ctx.metrics, {
        host: metrics.host,
        port: metrics.port,
      })
    }
    await this.app.listen({ host, port })
    this.ctx.ingest.start()
    const { address, port: bound } = this.app.server.address() as AddressInfo
    this.ctx.logger.info({ url: this.ctx.config.server.base_url }, 'appview started')
    return `http://${address.includes(':') ? `[${address}]` : address}:${bound}`
  }

  async destroy(): Promise<void> {
    await closeWithGrace(this.app, this.ctx.config.server.shutdown_grace * 1000)
    await this.metricsListener?.close()
    await closeAppViewContext(this.ctx)
  }
}
