// An atproto firehose (com.atproto.sync.subscribeRepos of a relay, a PDS or a hold) into
// the index, through @atproto/sync's Firehose: every commit is verified against its repo's
// signing key before its records are read. A commit's operations share its sequence number,
// which is the cursor (see stream-sink.ts).
import type { Logger } from '@atcr/core/log'
import type { IdResolver } from '@atproto/identity'
import { type Event, Firehose, FirehoseHandlerError } from '@atproto/sync'
import { WANTED_COLLECTIONS } from './apply.ts'
import type { IndexService } from './index-service.ts'
import { StreamSink } from './stream-sink.ts'

export interface ConsumerOptions {
  /** The service URL (http(s) or ws(s)). */
  url: string
  index: IndexService
  onIdentity: (did: string) => Promise<void>
  logger: Logger
  now: () => number
  reconnectDelayMs: number
}

export interface FirehoseOptions extends ConsumerOptions {
  idResolver: IdResolver
  /**
   * A relay starts live when it has no cursor yet (its history is the network's); a PDS or
   * hold starts from its first retained event.
   */
  relay: boolean
}

/** What the ingest service asks of any consumer. */
export interface Consumer {
  readonly source: string
  readonly cursor: number | null
  readonly lagMs: number | null
  /** Commits or events that could not be read (bad signature, malformed), since start. */
  readonly errors: number
  start(): Promise<void>
  stop(): Promise<void>
}

/** `ws(s)://host[:port]` of a service URL, the form subscriptions take. */
export function websocketUrl(url: string): string {
  const parsed = new URL(url)
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:'
  if (parsed.protocol === 'https:') parsed.protocol = 'wss:'
  return parsed.href.replace(/\/$/, '')
}

export class FirehoseConsumer implements Consumer {
  readonly source: string
  readonly #options: FirehoseOptions
  readonly #sink: StreamSink
  #firehose: Firehose | null = null
  #errors = 0
  #restarting: Promise<void> | null = null
  #stopped = false

  constructor(options: FirehoseOptions) {
    this.#options = options
    this.source = websocketUrl(options.url)
    this.#sink = new StreamSink({ ...options, source: this.source })
  }

  get cursor(): number | null {
    return this.#sink.cursor
  }

  get lagMs(): number | null {
    return this.#sink.lagMs
  }

  get errors(): number {
    return this.#errors
  }

  async start(): Promise<void> {
    this.#stopped = false
    await this.#sink.load()
    this.#connect()
  }

  #connect(): void {
    const firehose = new Firehose({
      service: this.source,
      idResolver: this.#options.idResolver,
      // Asked at every (re)connection: resume after what was applied.
      getCursor: async () => {
        await this.#sink.flush()
        return this.#sink.cursor ?? (this.#options.relay ? undefined : 0)
      },
      // Commits touching none of these are neither verified nor decoded (a relay's
      // firehose is mostly other apps'); the cursor moves with the next event read.
      filterCollections: [...WANTED_COLLECTIONS],
      handleEvent: (event) => this.#handle(event),
      onError: (error) => this.#onError(error),
      subscriptionReconnectDelay: this.#options.reconnectDelayMs,
    })
    this.#firehose = firehose
    void firehose.start()
  }

  async #handle(event: Event): Promise<void> {
    const time = Date.parse(event.time)
    if (event.event === 'create' || event.event === 'update') {
      const { did, collection, rkey, record } = event
      await this.#sink.add(event.seq, time, { change: { did, collection, rkey, record } })
    } else if (event.event === 'delete') {
      const { did, collection, rkey } = event
      await this.#sink.add(event.seq, time, { change: { did, collection, rkey, record: null } })
    } else if (event.event === 'identity') {
      await this.#sink.add(event.seq, time, { identity: event.did })
    } else {
      await this.#sink.add(event.seq, time, {})
    }
  }

  #onError(error: Error): void {
    if (error instanceof FirehoseHandlerError) {
      // The database failed: the event was not applied. Start again from the cursor, so
      // nothing is skipped.
      this.#options.logger.error({ err: error }, 'applying a firehose event failed')
      this.#restart()
      return
    }
    this.#errors++
    this.#options.logger.warn({ err: error, source: this.source }, 'firehose error')
  }

  #restart(): void {
    if (this.#restarting) return
    this.#restarting = (async () => {
      await this.#firehose?.destroy()
      this.#firehose = null
      await new Promise((resolve) => setTimeout(resolve, this.#options.reconnectDelayMs))
      this.#sink.discardPending()
      if (!this.#stopped) this.#connect()
    })().finally(() => {
      this.#restarting = null
    })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await this.#restarting
    await this.#firehose?.destroy()
    this.#firehose = null
    await this.#sink.close().catch((error: unknown) => {
      this.#options.logger.warn({ err: error }, 'writing the firehose cursor on stop failed')
    })
  }
}
