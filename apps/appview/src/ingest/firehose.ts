// An atproto firehose (com.atproto.sync.subscribeRepos of a relay, a PDS or a hold) into
// the index, through @atproto/sync's Firehose: every commit is verified against its repo's
// signing key before its records are read. A commit's operations share its sequence number,
// which is the cursor (see stream-sink.ts).
import type { IdResolver } from '@atproto/identity'
import { type Event, Firehose, FirehoseHandlerError } from '@atproto/sync'
import { WANTED_COLLECTIONS } from './apply.ts'
import { type ConsumerOptions, StreamConsumer } from './consumer.ts'

export interface FirehoseOptions extends ConsumerOptions {
  idResolver: IdResolver
  /**
   * A relay starts live when it has no cursor yet (its history is the network's); a PDS or
   * hold starts from its first retained event.
   */
  relay: boolean
}

export class FirehoseConsumer extends StreamConsumer<FirehoseOptions> {
  #firehose: Firehose | null = null
  #restarting: Promise<void> | null = null

  protected connect(): void {
    const firehose = new Firehose({
      service: this.source,
      idResolver: this.options.idResolver,
      // Asked at every (re)connection: resume after what was applied.
      getCursor: async () => {
        await this.sink.flush()
        return this.sink.cursor ?? (this.options.relay ? undefined : 0)
      },
      // Commits touching none of these are neither verified nor decoded (a relay's
      // firehose is mostly other apps'); the cursor moves with the next event read.
      filterCollections: [...WANTED_COLLECTIONS],
      handleEvent: (event) => this.#handle(event),
      onError: (error) => this.#onError(error),
      subscriptionReconnectDelay: this.options.reconnectDelayMs,
    })
    this.#firehose = firehose
    void firehose.start()
  }

  async #handle(event: Event): Promise<void> {
    const time = Date.parse(event.time)
    if (event.event === 'create' || event.event === 'update') {
      const { did, collection, rkey, record } = event
      await this.sink.add(event.seq, time, { change: { did, collection, rkey, record } })
    } else if (event.event === 'delete') {
      const { did, collection, rkey } = event
      await this.sink.add(event.seq, time, { change: { did, collection, rkey, record: null } })
    } else if (event.event === 'identity') {
      await this.sink.add(event.seq, time, { identity: event.did })
    } else {
      await this.sink.add(event.seq, time, {})
    }
  }

  #onError(error: Error): void {
    if (error instanceof FirehoseHandlerError) {
      // The database failed: the event was not applied. Start again from the cursor, so
      // nothing is skipped.
      this.options.logger.error({ err: error }, 'applying a firehose event failed')
      this.#restart()
      return
    }
    this.errorCount++
    this.options.logger.warn({ err: error, source: this.source }, 'firehose error')
  }

  #restart(): void {
    if (this.#restarting) return
    this.#restarting = (async () => {
      await this.#firehose?.destroy()
      this.#firehose = null
      await new Promise((resolve) => setTimeout(resolve, this.options.reconnectDelayMs))
      this.sink.discardPending()
      if (!this.stopped) this.connect()
    })().finally(() => {
      this.#restarting = null
    })
  }

  async stop(): Promise<void> {
    this.stopped = true
    await this.#restarting
    await this.#firehose?.destroy()
    this.#firehose = null
    await this.sink.close().catch((error: unknown) => {
      this.options.logger.warn({ err: error }, 'writing the firehose cursor on stop failed')
    })
  }
}
