// Pruning of the firehose event log: events older than the retention go, at start and then
// periodically while the server runs. The newest event always stays, so the sequence
// continues from it; a cursor older than the oldest kept event gets an OutdatedCursor
// info message and the events that are kept (outbox.ts).
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Sequencer } from '../sequencer.ts'

const EVERY_MIN_MS = 1000
const EVERY_MAX_MS = 60 * 60_000

export interface EventPrunerOptions {
  sequencer: Sequencer
  /** Seconds an event is kept. */
  retention: number
  logger: Logger
}

/** Prunes when the server is ready, then every quarter of the retention (1 s .. 1 h). */
export function startEventPruner(app: FastifyInstance, opts: EventPrunerOptions): void {
  const { sequencer, retention, logger } = opts
  const every = Math.min(Math.max((retention * 1000) / 4, EVERY_MIN_MS), EVERY_MAX_MS)
  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> = Promise.resolve()
  const prune = () => {
    running = running.then(async () => {
      try {
        const before = new Date(Date.now() - retention * 1000).toISOString()
        const pruned = await sequencer.prune(before)
        if (pruned > 0) logger.info({ pruned, before }, 'pruned firehose events')
      } catch (err) {
        logger.error({ err }, 'pruning firehose events failed')
      }
    })
  }
  app.addHook('onReady', async () => {
    prune()
    timer = setInterval(prune, every)
    timer.unref()
  })
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await running
  })
}
