/**
 * #identity events on the hold's firehose, seen by the stock @atproto/sync consumer: a
 * did:plc hold restarted with a new public URL or a new signing key updates the real PLC
 * directory and announces it; a restart with nothing changed announces nothing. Also the
 * handle: the host of the public URL when it is a valid handle, else none. And the
 * captain record's successor, from config.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import { Secp256k1Keypair } from '@atproto/crypto'
import { getKey, IdResolver } from '@atproto/identity'
import { type Event, Firehose } from '@atproto/sync'
import { handleOfUrl } from '../src/identity.ts'
import { putCrewRecord } from './hold-data.ts'
import { HoldFixture, type TestHold } from './hold-harness.ts'

let fixture: HoldFixture
let hold: TestHold
let dataDir: string
let port: number
let rotationKeyPath: string

/** Starts the hold on the same data dir and port, with this public URL. */
async function startWith(publicUrl: string): Promise<TestHold> {
  await hold?.stop()
  hold = await fixture.startHold({
    dataDir,
    port,
    overrides: {
      server: { public_url: publicUrl },
      identity: { did_method: 'plc', rotation_key_path: rotationKeyPath },
    },
  })
  return hold
}

/** The stock consumer, resuming from its last seq across the hold's restarts. */
function consume(service: string, plcUrl: string) {
  const events: Event[] = []
  const errors: Error[] = []
  let cursor = 0
  let wake = () => {}
  const firehose = new Firehose({
    service,
    // Dev/test only: the default fetch refuses http and loopback.
    idResolver: new IdResolver({ plcUrl, fetch: globalThis.fetch, timeout: 5000 }),
    getCursor: () => cursor,
    handleEvent: (evt) => {
      events.push(evt)
      cursor = evt.seq
      wake()
    },
    onError: (err) => errors.push(err),
    subscriptionReconnectDelay: 100,
  })
  void firehose.start()
  return {
    events,
    errors,
    firehose,
    /** Resolves with the first event after `index` that `match` accepts. */
    async next(index: number, match: (evt: Event) => boolean, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const found = events.slice(index).find(match)
        if (found) return found
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no such event after ${index}; errors: ${errors}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    },
  }
}

let consumer: ReturnType<typeof consume>

before(async () => {
  fixture = await HoldFixture.start({ ownerDid: 'did:plc:identityeventsowner' })
  dataDir = await fixture.tempDir()
  rotationKeyPath = join(await fixture.tempDir(), 'rotation.key')
  const first = await fixture.startHold({
    dataDir,
    overrides: { identity: { did_method: 'plc', rotation_key_path: rotationKeyPath } },
  })
  hold = first
  port = Number(new URL(first.url).port)
  consumer = consume(`ws://localhost:${port}`, fixture.net.plc.url)
})
after(async () => {
  await consumer?.firehose.destroy()
  await fixture?.close()
})

const isIdentity = (evt: Event) => evt.event === 'identity'
const isCommit = (evt: Event) => evt.event === 'create' || evt.event === 'update'

/** The document the PLC directory serves now. */
async function plcDocument(did: string) {
  const response = await fetch(`${fixture.net.plc.url}/${did}`)
  return (await response.json()) as {
    alsoKnownAs: string[]
    service: { id: string; serviceEndpoint: string }[]
  }
}

async function describeRepo() {
  const query = new URLSearchParams({ repo: hold.did })
  const response = await fetch(
    `http://localhost:${port}/xrpc/com.atproto.repo.describeRepo?${query}`,
  )
  return (await response.json()) as { handle: string; handleIsCorrect: boolean }
}

describe('identity events', () => {
  it('announces the new repo once, and a restart with nothing changed announces nothing', async () => {
    const created = await consumer.next(0, isIdentity)
    assert.equal(created.did, hold.did)
    assert.ok(hold.did.startsWith('did:plc:'))
    await consumer.next(0, (evt) => evt.event === 'account' && evt.active)

    const before = consumer.events.length
    await hold.restart()
    await putCrewRecord(hold.ctx, 'after-restart', 'did:plc:afterrestart')
    await consumer.next(
      before,
      (evt) => isCommit(evt) && 'rkey' in evt && evt.rkey === 'after-restart',
    )
    assert.deepEqual(
      consumer.events.slice(before).filter(isIdentity),
      [],
      'no #identity after a restart that changed nothing',
    )
  })

  it('a new public URL with a valid handle: PLC updated, #identity with the new document', async () => {
    const before = consumer.events.length
    await startWith('https://hold-events.test')
    const evt = await consumer.next(before, isIdentity)
    assert.equal(evt.did, hold.did)
    assert.ok(evt.event === 'identity')
    const doc = evt.didDocument
    assert.deepEqual(doc?.alsoKnownAs, ['at://hold-events.test'])
    assert.equal(
      doc?.service?.find((s) => s.id === '#atproto_pds')?.serviceEndpoint,
      'https://hold-events.test',
    )
    const described = await describeRepo()
    assert.equal(described.handle, 'hold-events.test')
    assert.equal(described.handleIsCorrect, true)
  })

  it('back on localhost: no handle (handle.invalid), and the old one leaves the document', async () => {
    const before = consumer.events.length
    await startWith(`http://localhost:${port}`)
    const evt = await consumer.next(before, isIdentity)
    assert.ok(evt.event === 'identity')
    assert.deepEqual(evt.didDocument?.alsoKnownAs ?? [], [])
    assert.deepEqual((await plcDocument(hold.did)).alsoKnownAs, [])
    const described = await describeRepo()
    assert.equal(described.handle, 'handle.invalid')
    assert.equal(described.handleIsCorrect, false)
  })

  it('a new signing key: #identity, and commits signed with it verify', async () => {
    await hold.stop()
    const newKey = await Secp256k1Keypair.create({ exportable: true })
    await writeFile(
      join(dataDir, 'signing.key'),
      Buffer.from(await newKey.export()).toString('hex'),
    )
    const before = consumer.events.length
    await startWith(`http://localhost:${port}`)
    const evt = await consumer.next(before, isIdentity)
    assert.ok(evt.event === 'identity')
    assert.ok(evt.didDocument)
    assert.equal(getKey(evt.didDocument), newKey.did())

    const errorsBefore = consumer.errors.length
    await putCrewRecord(hold.ctx, 'new-key', 'did:plc:newkeymember')
    await consumer.next(before, (e) => isCommit(e) && 'rkey' in e && e.rkey === 'new-key')
    assert.deepEqual(consumer.errors.slice(errorsBefore), [])
  })
})

describe('a successor', () => {
  it("the old host's captain record names it, and keeps it when config no longer does", async () => {
    const successor = 'did:web:hold-successor.example.com'
    await hold.stop()
    hold = await fixture.startHold({
      dataDir,
      port,
      overrides: {
        registration: { successor },
        identity: { did_method: 'plc', rotation_key_path: rotationKeyPath },
      },
    })
    const captain = async () =>
      (await hold.ctx.repo.reader.getRecord(NSID.holdCaptain, 'self'))?.value.successor
    assert.equal(await captain(), successor)
    await startWith(`http://localhost:${port}`)
    assert.equal(await captain(), successor)
  })
})

describe('the handle a public URL gives', () => {
  it('is the host only when it is a valid handle without a port', () => {
    assert.equal(handleOfUrl('https://hold.example.com'), 'hold.example.com')
    assert.equal(handleOfUrl('https://Hold.Example.com/'), 'hold.example.com')
    assert.equal(handleOfUrl('http://localhost:8080'), null)
    assert.equal(handleOfUrl('http://127.0.0.1'), null)
    assert.equal(handleOfUrl('http://[::1]:5000'), null)
    assert.equal(handleOfUrl('https://hold.example.com:8443'), null)
    assert.equal(handleOfUrl('https://hold.local'), null)
  })
})
