// A Jetstream service (JSON over a WebSocket, filtered to io.atcr.* by the service) into the
// index. Jetstream has already checked the commits it relays, and sends no proofs: its
// events are trusted as they come, which is why the firehose is the default. Its cursor is
// the event's time_us; a reconnection replays from the cursor and what was applied is
// skipped (see stream-sink.ts).
import { WANTED_COLLECTIONS } from './apply.ts'
import { type ConsumerOptions, StreamConsumer } from './consumer.ts'

const MAX_MESSAGE_BYTES = 2 * 1024 * 1024
// Messages waiting to be applied before the consumer stops reading and reconnects later.
const MAX_QUEUED = 1000

interface JetstreamEvent {
  did?: unknown
  time_us?: unknown
  kind?: unknown
  commit?: {
    operation?: unknown
    collection?: unknown
    rkey?: unknown
    record?: unknown
  }
}

export class JetstreamConsumer extends StreamConsumer<ConsumerOptions> {
  #socket: WebSocket | null = null
  #queue: Promise<void> = Promise.resolve()
  #queued = 0
  #timer: NodeJS.Timeout | null = null

  protected connect(): void {
    const url = new URL(`${this.source}/subscribe`)
    for (const wanted of WANTED_COLLECTIONS) url.searchParams.append('wantedCollections', wanted)
    const cursor = this.sink.cursor
    if (cursor !== null) url.searchParams.set('cursor', String(cursor))
    const socket = new WebSocket(url)
    this.#socket = socket
    socket.addEventListener('message', (message) => {
      if (this.#socket !== socket) return
      if (++this.#queued > MAX_QUEUED) {
        // Reading faster than the database takes it: drop the connection, resume later.
        this.#queued--
        socket.close()
        return
      }
      this.#queue = this.#queue
        .then(() => this.#handle(message.data))
        .catch((error: unknown) => {
          this.options.logger.error({ err: error }, 'applying a Jetstream event failed')
          if (this.#socket === socket) socket.close()
        })
        .finally(() => this.#queued--)
    })
    socket.addEventListener('error', () => {
      this.options.logger.warn({ source: this.source }, 'Jetstream connection failed')
    })
    socket.addEventListener('close', () => {
      if (this.#socket !== socket) return
      this.#socket = null
      void this.#reconnectLater()
    })
  }

  async #reconnectLater(): Promise<void> {
    // What was read but not applied is read again from the cursor.
    await this.#queue
    this.sink.discardPending()
    if (this.stopped) return
    this.#timer = setTimeout(() => {
      this.#timer = null
      if (!this.stopped) this.connect()
    }, this.options.reconnectDelayMs)
  }

  async #handle(data: unknown): Promise<void> {
    if (typeof data !== 'string' || data.length > MAX_MESSAGE_BYTES) {
      this.errorCount++
      return
    }
    let event: JetstreamEvent
    try {
      event = JSON.parse(data) as JetstreamEvent
    } catch {
      this.errorCount++
      return
    }
    // `null`, a list or a string parse too: skipped like any malformed event, not thrown
    // (a throw closes the connection, and the same message comes back on reconnection).
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      this.errorCount++
      return
    }
    const { did, time_us: timeUs, kind } = event
    if (typeof did !== 'string' || typeof timeUs !== 'number' || !Number.isSafeInteger(timeUs)) {
      this.errorCount++
      return
    }
    const time = Math.floor(timeUs / 1000)
    if (kind === 'identity') {
      await this.sink.add(timeUs, time, { identity: did })
      return
    }
    const commit = event.commit
    if (kind !== 'commit' || !commit) {
      await this.sink.add(timeUs, time, {})
      return
    }
    const { operation, collection, rkey } = commit
    if (typeof collection !== 'string' || typeof rkey !== 'string') {
      this.errorCount++
      return
    }
    const record = operation === 'delete' ? null : (commit.record ?? {})
    await this.sink.add(timeUs, time, { change: { did, collection, rkey, record } })
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    const socket = this.#socket
    this.#socket = null
    socket?.close()
    await this.#queue
    await this.sink.close().catch((error: unknown) => {
      this.options.logger.warn({ err: error }, 'writing the Jetstream cursor on stop failed')
    })
  }
}
