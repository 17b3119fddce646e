// A small Jetstream-shaped server on loopback, fed from real firehoses. Jetstream is a Go
// service with no package here, so tests of a Jetstream consumer run against this instead:
// it subscribes to each upstream's com.atproto.sync.subscribeRepos with @atproto/sync (commits
// verified), turns every event into Jetstream's JSON (kind commit/identity/account, time_us,
// commit.operation/collection/rkey/record/cid), keeps them in memory, and serves
// `/subscribe?wantedCollections=...&cursor=TIME_US` over a WebSocket: events from the cursor
// on (inclusive, as Jetstream does), then live ones.
import { createServer, type Server } from 'node:http'
import { IdResolver } from '@atproto/identity'
import { type LexValue, lexToJson } from '@atproto/lexicon'
import { type Event, Firehose } from '@atproto/sync'
import { type WebSocket, WebSocketServer } from 'ws'
import { LOOPBACK, portOf } from './ports.ts'

export interface JetstreamEvent {
  did: string
  time_us: number
  kind: 'commit' | 'identity' | 'account'
  commit?: {
    rev: string
    operation: 'create' | 'update' | 'delete'
    collection: string
    rkey: string
    record?: unknown
    cid?: string
  }
  identity?: { did: string; handle?: string; seq: number; time: string }
  account?: { did: string; active: boolean; seq: number; time: string }
}

export interface TestJetstream {
  /** `ws://127.0.0.1:PORT` */
  url: string
  /** Every event so far, oldest first. */
  events(): JetstreamEvent[]
  /** How many subscribers are connected now. */
  connections(): number
  /** How many subscriptions were opened since start (reconnections included). */
  subscriptions(): number
  /**
   * Sends `text` as it is (any message, for fuzzing a consumer) to the subscribers now, and
   * to those that connect later with a cursor at or before `timeUs`.
   */
  inject(text: string, timeUs: number): void
  close(): Promise<void>
}

/** A message as sent: its time, its text, and its collection (for wantedCollections). */
interface Sent {
  time_us: number
  text: string
  collection?: string
}

interface Subscriber {
  socket: WebSocket
  wanted: ((collection: string) => boolean) | null
}

function collectionFilter(wanted: string[]): ((collection: string) => boolean) | null {
  if (wanted.length === 0) return null
  return (collection) =>
    wanted.some((w) =>
      w.endsWith('.*') ? collection.startsWith(w.slice(0, -1)) : w === collection,
    )
}

function toJetstream(event: Event, timeUs: number): JetstreamEvent | null {
  const base = { did: event.did, time_us: timeUs }
  switch (event.event) {
    case 'create':
    case 'update':
      return {
        ...base,
        kind: 'commit',
        commit: {
          rev: event.rev,
          operation: event.event,
          collection: event.collection,
          rkey: event.rkey,
          record: lexToJson(event.record as LexValue),
          cid: event.cid.toString(),
        },
      }
    case 'delete':
      return {
        ...base,
        kind: 'commit',
        commit: {
          rev: event.rev,
          operation: 'delete',
          collection: event.collection,
          rkey: event.rkey,
        },
      }
    case 'identity':
      return {
        ...base,
        kind: 'identity',
        identity: {
          did: event.did,
          ...(event.handle ? { handle: event.handle } : {}),
          seq: event.seq,
          time: event.time,
        },
      }
    case 'account':
      return {
        ...base,
        kind: 'account',
        account: { did: event.did, active: event.active, seq: event.seq, time: event.time },
      }
    default:
      return null
  }
}

/** Starts the server and its subscriptions to `upstreams` (`ws://...` service URLs). */
export async function startJetstream(options: {
  upstreams: string[]
  plcUrl: string
}): Promise<TestJetstream> {
  const events: JetstreamEvent[] = []
  const log: Sent[] = []
  const subscribers = new Set<Subscriber>()
  let opened = 0
  let lastTimeUs = 0
  const send = (subscriber: Subscriber, sent: Sent) => {
    const { collection } = sent
    if (collection !== undefined && subscriber.wanted && !subscriber.wanted(collection)) return
    subscriber.socket.send(sent.text)
  }
  const publish = (sent: Sent) => {
    log.push(sent)
    for (const subscriber of subscribers) send(subscriber, sent)
  }
  // Test only: the default fetch refuses the loopback PLC.
  const idResolver = new IdResolver({ plcUrl: options.plcUrl, fetch: globalThis.fetch })
  const firehoses = options.upstreams.map(
    (service) =>
      new Firehose({
        service,
        idResolver,
        // From the upstream's first event: the server replays history as Jetstream would.
        getCursor: () => 0,
        handleEvent: (evt) => {
          lastTimeUs = Math.max(lastTimeUs + 1, Date.now() * 1000)
          const event = toJetstream(evt, lastTimeUs)
          if (!event) return
          events.push(event)
          const collection = event.commit?.collection
          publish({
            time_us: event.time_us,
            text: JSON.stringify(event),
            ...(collection === undefined ? {} : { collection }),
          })
        },
        onError: () => {},
        subscriptionReconnectDelay: 100,
      }),
  )
  for (const firehose of firehoses) void firehose.start()

  const server: Server = createServer((_, response) => {
    response.writeHead(404).end()
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (request, socket, head) => {
    const url = new URL(request.url ?? '/', 'ws://localhost')
    if (url.pathname !== '/subscribe') {
      socket.destroy()
      return
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const subscriber: Subscriber = {
        socket: ws,
        wanted: collectionFilter(url.searchParams.getAll('wantedCollections')),
      }
      const cursor = url.searchParams.get('cursor')
      if (cursor !== null) {
        for (const sent of log) if (sent.time_us >= Number(cursor)) send(subscriber, sent)
      }
      subscribers.add(subscriber)
      opened++
      ws.on('close', () => subscribers.delete(subscriber))
    })
  })
  server.listen(0, LOOPBACK)
  await new Promise<void>((resolve) => server.once('listening', resolve))
  return {
    url: `ws://${LOOPBACK}:${portOf(server)}`,
    events: () => [...events],
    connections: () => subscribers.size,
    subscriptions: () => opened,
    inject: (text, timeUs) => publish({ time_us: timeUs, text }),
    async close() {
      await Promise.all(firehoses.map((f) => f.destroy()))
      for (const subscriber of subscribers) subscriber.socket.terminate()
      wss.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
