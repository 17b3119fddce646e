import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { IdResolver } from '@atproto/identity'
import { decodeAll } from '@atproto/lex-cbor'
import type { Cid } from '@atproto/lex-data'
import { def, MemoryBlockstore, MST, readCar } from '@atproto/repo'
import { type Event, Firehose } from '@atproto/sync'
import { WebSocket } from 'ws'
import { CREW, crewRecord, type EmbeddedPds, startEmbeddedPds } from './pds-harness.ts'

const STATS = 'io.atcr.hold.stats'

const crew = (member: string, role = 'write') => crewRecord(member, role, ['blob:read'])

const consumers = new Set<Firehose>()

/** A real @atproto/sync consumer: it verifies every commit against the DID's key. */
function consume(hold: EmbeddedPds, cursor?: number) {
  const events: Event[] = []
  const errors: Error[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  const firehose = new Firehose({
    service: hold.wsUrl,
    // Dev/test only: the default fetch refuses http and loopback.
    idResolver: new IdResolver({ fetch: globalThis.fetch, timeout: 2000 }),
    getCursor: () => cursor,
    handleEvent: (evt) => {
      events.push(evt)
      if ('seq' in evt) cursor = evt.seq
      for (const w of waiters.filter((w) => events.length >= w.n)) w.resolve()
    },
    onError: (err) => errors.push(err),
    subscriptionReconnectDelay: 100,
  })
  consumers.add(firehose)
  void firehose.start()
  return {
    events,
    errors,
    firehose,
    /** Resolves once `n` events arrived in all. */
    until(n: number, timeoutMs = 10_000) {
      if (events.length >= n) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`only ${events.length} of ${n} events; errors: ${errors}`)),
          timeoutMs,
        )
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer)
            resolve()
          },
        })
      })
    },
  }
}

interface Frame {
  header: { op: number; t?: string }
  body: Record<string, unknown>
}

/** A bare WebSocket subscriber that decodes frames itself. */
function rawSubscribe(hold: EmbeddedPds, query = '') {
  const ws = new WebSocket(`${hold.wsUrl}/xrpc/com.atproto.sync.subscribeRepos${query}`)
  const frames: Frame[] = []
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  })
  ws.on('message', (data: Buffer) => {
    const [header, body] = [...decodeAll(new Uint8Array(data))] as unknown as [
      Frame['header'],
      Frame['body'],
    ]
    frames.push({ header, body })
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  return { ws, frames, closed, opened }
}

async function waitFor(check: () => boolean, what: string, timeoutMs = 10_000) {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('hold PDS firehose', () => {
  let hold: EmbeddedPds

  before(async () => {
    hold = await startEmbeddedPds()
  })

  after(async () => {
    await Promise.all([...consumers].map((f) => f.destroy()))
    await hold?.close()
  })

  it('streams verified commits to a stock @atproto/sync consumer', async () => {
    const sub = consume(hold, 0)
    // The repo's creation: #identity, #account, the empty first commit (no ops), #sync.
    await sub.until(3)
    await hold.repo.writer.createRecord(CREW, 'alice', crew('did:plc:alice'))
    await hold.repo.writer.upsertRecord(CREW, 'alice', crew('did:plc:alice', 'admin'))
    await hold.repo.writer.applyWrites([
      { action: 'delete', collection: CREW, rkey: 'alice' },
      { action: 'create', collection: CREW, rkey: 'bob', record: crew('did:plc:bob') },
    ])
    await sub.until(7)
    await sub.firehose.destroy()
    assert.deepEqual(sub.errors, [])
    const summary = sub.events.map((e) =>
      e.event === 'create' || e.event === 'update' || e.event === 'delete'
        ? `${e.event} ${e.collection}/${e.rkey}`
        : e.event,
    )
    assert.deepEqual(summary, [
      'identity',
      'account',
      'sync',
      `create ${CREW}/alice`,
      `update ${CREW}/alice`,
      `delete ${CREW}/alice`,
      `create ${CREW}/bob`,
    ])
    const update = sub.events[4]
    assert.ok(update?.event === 'update')
    assert.equal(update.record.role, 'admin')
    assert.equal(update.did, hold.did)
  })

  it('sends #commit frames shaped as the sync spec says', async () => {
    const raw = rawSubscribe(hold)
    await raw.opened
    const result = await hold.repo.writer.upsertRecord(CREW, 'bob', crew('did:plc:bob', 'read'))
    await waitFor(() => raw.frames.length >= 1, 'a frame')
    raw.ws.close()
    const frame = raw.frames[0]
    assert.deepEqual(frame?.header, { op: 1, t: '#commit' })
    const body = frame?.body ?? {}
    assert.equal(body.seq, result?.seq)
    assert.equal(body.repo, hold.did)
    assert.equal(String(body.commit), result?.cid)
    assert.equal(body.rev, result?.rev)
    assert.equal(typeof body.since, 'string')
    assert.equal(body.rebase, false)
    assert.equal(body.tooBig, false)
    assert.deepEqual(body.blobs, [])
    assert.ok(body.prevData, 'prevData: the MST root before the commit')
    assert.ok(typeof body.time === 'string' && !Number.isNaN(Date.parse(body.time)))
    const ops = body.ops as { action: string; path: string; cid: unknown; prev?: unknown }[]
    assert.equal(ops.length, 1)
    assert.equal(ops[0]?.action, 'update')
    assert.equal(ops[0]?.path, `${CREW}/bob`)
    assert.equal(String(ops[0]?.cid), result?.writes[0]?.cid)
    assert.equal(String(ops[0]?.prev), result?.writes[0]?.prev)
    const car = await readCar(body.blocks as Uint8Array)
    assert.equal(String(car.roots[0]), result?.cid)
    assert.ok(
      car.blocks.cids().some((c) => String(c) === result?.writes[0]?.cid),
      'the new record',
    )
  })

  it('replays from the start: the repo creation events, then every commit', async () => {
    const raw = rawSubscribe(hold, '?cursor=0')
    await waitFor(() => raw.frames.length >= 8, 'the replay')
    raw.ws.close()
    assert.deepEqual(
      raw.frames.map((f) => f.header.t),
      ['#identity', '#account', '#commit', '#sync', '#commit', '#commit', '#commit', '#commit'],
    )
    assert.deepEqual(
      raw.frames.map((f) => f.body.seq),
      [1, 2, 3, 4, 5, 6, 7, 8],
    )
    assert.deepEqual(raw.frames[0]?.body.did, hold.did)
    assert.equal(raw.frames[1]?.body.active, true)
    assert.deepEqual(raw.frames[2]?.body.ops, [])
  })

  it('refuses a cursor in the future with a FutureCursor error frame', async () => {
    const raw = rawSubscribe(hold, `?cursor=${hold.repo.sequencer.head + 100}`)
    const { code } = await raw.closed
    assert.equal(code, 1008)
    assert.deepEqual(raw.frames, [
      { header: { op: -1 }, body: { error: 'FutureCursor', message: 'Cursor in the future.' } },
    ])
    const bad = rawSubscribe(hold, '?cursor=abc')
    await bad.closed
    assert.equal(bad.frames[0]?.body.error, 'InvalidRequest')
    const plain = await fetch(`${hold.url}/xrpc/com.atproto.sync.subscribeRepos`)
    assert.equal(plain.status, 400)
    assert.equal(((await plain.json()) as { error: string }).error, 'InvalidRequest')
  })

  it('replays exactly the missed events after a restart, then continues live', async () => {
    const sub = consume(hold, hold.repo.sequencer.head)
    await hold.repo.writer.createRecord(STATS, 'one', { $type: STATS, pullCount: 1 })
    await sub.until(1)
    await sub.firehose.destroy()
    const lastSeen = sub.events.at(-1)
    assert.ok(lastSeen && 'seq' in lastSeen)
    const cursor = lastSeen.seq

    // Missed while nobody listened: two before the restart, one after.
    await hold.repo.writer.createRecord(STATS, 'two', { $type: STATS, pullCount: 2 })
    await hold.repo.writer.createRecord(STATS, 'three', { $type: STATS, pullCount: 3 })
    await hold.stop()
    const { dir, port, keypair } = hold
    hold = await startEmbeddedPds({ dir, port, keypair })
    await hold.repo.writer.createRecord(STATS, 'four', { $type: STATS, pullCount: 4 })

    const resumed = consume(hold, cursor)
    await resumed.until(3)
    await hold.repo.writer.createRecord(STATS, 'five', { $type: STATS, pullCount: 5 })
    await resumed.until(4)
    await new Promise((r) => setTimeout(r, 200))
    await resumed.firehose.destroy()
    assert.deepEqual(resumed.errors, [])
    assert.deepEqual(
      resumed.events.map((e) => ('seq' in e ? [e.seq, e.event, 'rkey' in e ? e.rkey : ''] : [])),
      [
        [cursor + 1, 'create', 'two'],
        [cursor + 2, 'create', 'three'],
        [cursor + 3, 'create', 'four'],
        [cursor + 4, 'create', 'five'],
      ],
    )
  })

  it('sends a 200-write commit as a #commit a consumer can invert, and 201 as a #sync', async () => {
    const create = (rkey: string) => ({
      action: 'create' as const,
      collection: STATS,
      rkey,
      record: { $type: STATS, pullCount: rkey.length },
    })
    // Existing records on both sides of the new keys, so the proofs reach beyond the new
    // MST nodes to their unchanged neighbours.
    await hold.repo.writer.applyWrites(Array.from({ length: 150 }, (_, i) => create(`a${i}`)))
    await hold.repo.writer.applyWrites(Array.from({ length: 150 }, (_, i) => create(`c${i}`)))
    const sub = consume(hold, hold.repo.sequencer.head)
    const raw = rawSubscribe(hold, `?cursor=${hold.repo.sequencer.head}`)
    const writes = [
      ...Array.from({ length: 180 }, (_, i) => create(`b${i}`)),
      ...Array.from({ length: 10 }, (_, i) => ({
        action: 'delete' as const,
        collection: STATS,
        rkey: `a${i * 7}`,
      })),
      ...Array.from({ length: 10 }, (_, i) => ({
        ...create(`c${i * 9}`),
        action: 'update' as const,
      })),
    ]
    await hold.repo.writer.applyWrites(writes)
    const big = await hold.repo.writer.applyWrites(
      Array.from({ length: 201 }, (_, i) => create(`d${i}`)),
    )
    await sub.until(201)
    await waitFor(() => raw.frames.length >= 2, 'two frames')
    raw.ws.close()
    await sub.firehose.destroy()

    // A stock consumer checks each op against the MST proofs the #commit carries.
    assert.deepEqual(sub.errors, [])
    assert.deepEqual(
      raw.frames.map((f) => f.header.t),
      ['#commit', '#sync'],
    )
    assert.equal(
      String((await readCar(raw.frames[1]?.body.blocks as Uint8Array)).roots[0]),
      big.cid,
    )
    // The sync spec's inversion: undoing the ops on the event's blocks alone gives prevData.
    const body = raw.frames[0]?.body ?? {}
    const car = await readCar(body.blocks as Uint8Array)
    const storage = new MemoryBlockstore(car.blocks)
    const commit = await storage.readObj(car.roots[0] as Cid, def.commit)
    let tree = MST.load(storage, commit.data)
    const ops = body.ops as { action: string; path: string; cid: Cid | null; prev?: Cid }[]
    assert.equal(ops.length, 200)
    for (const op of ops.toReversed()) {
      if (op.action === 'create') tree = await tree.delete(op.path)
      else if (op.action === 'update' && op.prev) tree = await tree.update(op.path, op.prev)
      else if (op.action === 'delete' && op.prev) tree = await tree.add(op.path, op.prev)
      else assert.fail(`op without the CID it replaced: ${JSON.stringify(op)}`)
    }
    assert.equal(String(await tree.getPointer()), String(body.prevData))
  })
})

describe('hold PDS firehose retention', () => {
  let hold: EmbeddedPds

  before(async () => {
    hold = await startEmbeddedPds()
  })

  after(async () => {
    await hold?.close()
  })

  it('prunes old events but the newest, keeps the sequence, and tells an older cursor OutdatedCursor', async () => {
    for (const rkey of ['p1', 'p2', 'p3']) {
      await hold.repo.writer.createRecord(STATS, rkey, { $type: STATS, pullCount: 1 })
    }
    const head = hold.repo.sequencer.head
    const pruned = await hold.repo.sequencer.prune(new Date(Date.now() + 60_000).toISOString())
    assert.equal(pruned, head - 1)
    assert.equal(await hold.repo.sequencer.oldest(), head)
    await hold.repo.writer.createRecord(STATS, 'p4', { $type: STATS, pullCount: 4 })
    assert.equal(hold.repo.sequencer.head, head + 1)

    const raw = rawSubscribe(hold, '?cursor=1')
    await waitFor(() => raw.frames.length >= 3, 'the replay')
    raw.ws.close()
    assert.deepEqual(raw.frames[0]?.header, { op: 1, t: '#info' })
    assert.equal(raw.frames[0]?.body.name, 'OutdatedCursor')
    assert.deepEqual(
      raw.frames.slice(1).map((f) => f.body.seq),
      [head, head + 1],
    )
    // A cursor within the kept window gets no info message.
    const current = rawSubscribe(hold, `?cursor=${head}`)
    await waitFor(() => current.frames.length >= 1, 'the replay')
    current.ws.close()
    assert.equal(current.frames[0]?.body.seq, head + 1)
  })
})

describe('hold PDS firehose backpressure', () => {
  let hold: EmbeddedPds

  before(async () => {
    hold = await startEmbeddedPds({ routes: { firehose: { maxLagEvents: 10 } } })
  })

  after(async () => {
    await hold?.close()
  })

  it('drops a subscriber that stops reading instead of buffering for it', async () => {
    const reader = rawSubscribe(hold)
    const raw = rawSubscribe(hold)
    await Promise.all([raw.opened, reader.opened])
    await waitFor(() => hold.app.websocketServer.clients.size === 2, 'the subscribers')
    raw.ws.pause()
    // Big records fill the socket buffers quickly. Writes go at the pace of the reading
    // subscriber, which must keep up; the stalled one takes nothing.
    const padding = 'x'.repeat(256 * 1024)
    let written = 0
    while (written < 200 && !stalledDropped(hold)) {
      await hold.repo.writer.createRecord(STATS, `big${written}`, { $type: STATS, padding })
      written++
      await waitFor(() => reader.frames.length === written, 'the reading subscriber')
    }
    assert.ok(stalledDropped(hold), 'the server gave up on the stalled subscriber')
    raw.ws.resume()
    const { code } = await raw.closed
    const last = raw.frames.at(-1)
    assert.deepEqual(last?.header, { op: -1 })
    assert.equal(last?.body.error, 'ConsumerTooSlow')
    assert.equal(code, 1008)
    assert.ok(raw.frames.length < written, `${raw.frames.length} of ${written} frames`)
    // The subscriber that kept reading got every commit and is still connected.
    assert.ok(reader.frames.every((f) => f.header.t === '#commit'))
    assert.equal(reader.ws.readyState, WebSocket.OPEN)
    reader.ws.close()
  })
})

/** Whether one server-side socket is gone or closing. */
function stalledDropped(hold: EmbeddedPds): boolean {
  const sockets = [...hold.app.websocketServer.clients]
  return sockets.length < 2 || sockets.some((ws) => ws.readyState >= WebSocket.CLOSING)
}
