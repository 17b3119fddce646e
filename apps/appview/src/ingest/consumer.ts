// What every consumer of a stream into the index shares: where it reads, its sink (the
// cursor and the batches applied with it), its error count, and how it starts.
import type { Logger } from '@atcr/core/log'
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

/** A consumer writing through a StreamSink; subclasses connect and read. */
export abstract class StreamConsumer<O extends ConsumerOptions = ConsumerOptions>
  implements Consumer
{
  readonly source: string
  protected readonly options: O
  protected readonly sink: StreamSink
  protected errorCount = 0
  protected stopped = false

  constructor(options: O) {
    this.options = options
    this.source = websocketUrl(options.url)
    this.sink = new StreamSink({ ...options, source: this.source })
  }

  get cursor(): number | null {
    return this.sink.cursor
  }

  get lagMs(): number | null {
    return this.sink.lagMs
  }

  get errors(): number {
    return this.errorCount
  }

  async start(): Promise<void> {
    this.stopped = false
    await this.sink.load()
    this.connect()
  }

  protected abstract connect(): void

  abstract stop(): Promise<void>
}
