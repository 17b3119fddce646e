// Property-based fuzzing (fast-check) of the Jetstream consumer's message handling: a
// Jetstream-shaped server (testkit's, with no upstream) sends mutated events, arbitrary JSON
// (null, lists, strings), text that is not JSON and oversized messages, each followed by a
// valid tag record. The valid record is always indexed: no message stops the consumer or makes
// it read the same event again forever, and the bad ones are counted as errors or skipped.
// The seed is random per run; fast-check prints it (and the shrunk input) when a property fails.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { manifestRkey, NSID, tagRkey } from '@atcr/core/lexicons'
import { type Json, mutatedJson, startJetstream, type TestJetstream } from '@atcr/testkit'
import fc from 'fast-check'
import { pino } from 'pino'
import type { AppViewDatabase } from '../src/db/index.ts'
import { IndexService } from '../src/ingest/index-service.ts'
import { JetstreamConsumer } from '../src/ingest/jetstream.ts'
import { testEngines } from './engines.ts'

const ALICE = 'did:plc:alice'
const DIGEST = `sha256:${'1'.repeat(64)}`

function tagEvent(tag: string, timeUs: number) {
  return {
    did: ALICE,
    time_us: timeUs,
    kind: 'commit',
    commit: {
      rev: '3lbyqmx3xwk2a',
      operation: 'create',
      collection: NSID.tag,
      rkey: tagRkey('tools/app', tag),
      record: {
        $type: NSID.tag,
        repository: 'tools/app',
        tag,
        manifest: `at://${ALICE}/${NSID.manifest}/${manifestRkey(DIGEST)}`,
        manifestDigest: DIGEST,
        updatedAt: new Date().toISOString(),
      },
    },
  }
}

/** A message: a JSON value (sent with the stream's time_us where it has one), or raw text. */
type Message = { json: Json } | { raw: string }

const messageArb: fc.Arbitrary<Message> = fc.oneof(
  {
    weight: 5,
    arbitrary: mutatedJson(fc.constant(tagEvent('fuzz', 0) as unknown as Json), {
      names: ['did', 'time_us', 'kind', 'commit', 'operation', 'collection', 'rkey', 'record'],
    }).map((json) => ({ json })),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((json) => ({ json: json as Json })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((raw) => ({ raw })) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('null', '[]', '"x"', '{}', '{"did":1}', 'x'.repeat(2 * 1024 * 1024 + 1))
      .map((raw) => ({ raw })),
  },
)

/**
 * The message's text. A time_us still a safe integer moves with the stream: a bogus future
 * time would (rightly) make the consumer skip what follows as already seen.
 */
function textOf(message: Message, timeUs: number): string {
  if ('raw' in message) return message.raw
  const value = structuredClone(message.json)
  if (
    value &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    Number.isSafeInteger(value.time_us)
  ) {
    value.time_us = timeUs
  }
  return JSON.stringify(value)
}

describe('the Jetstream consumer, fuzzed', () => {
  const engines = testEngines()
  let db: AppViewDatabase
  let jetstream: TestJetstream
  let consumer: JetstreamConsumer
  let timeUs = Date.now() * 1000
  before(async () => {
    ;({ db } = await engines.engines[0]!.open())
    jetstream = await startJetstream({ upstreams: [], plcUrl: 'http://localhost:9' })
    const logger = pino({ level: 'silent' })
    const index = new IndexService({
      db,
      resolveAccount: async () => ({ handle: 'alice.test', pdsEndpoint: 'http://pds.test' }),
      logger,
      now: Date.now,
    })
    consumer = new JetstreamConsumer({
      url: jetstream.url.replace('ws:', 'http:'),
      index,
      onIdentity: async () => {},
      logger,
      now: Date.now,
      reconnectDelayMs: 50,
    })
    await consumer.start()
    await waitFor(() => jetstream.connections() === 1, 'the consumer connected')
  })
  after(async () => {
    await consumer?.stop()
    await jetstream?.close()
    await db?.close()
    await engines.close()
  })

  async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + 30_000
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  const indexed = async (tag: string) =>
    (await db.db
      .selectFrom('index_tag')
      .select('tag')
      .where('tag', '=', tag)
      .executeTakeFirst()) !== undefined

  it('a message that is not an event object is skipped, not read again and again', async () => {
    for (const text of ['null', '[]', '"x"', '7', 'not json']) {
      const opened = jetstream.subscriptions()
      jetstream.inject(text, ++timeUs)
      const tag = `after-${opened}-${timeUs}`
      jetstream.inject(JSON.stringify(tagEvent(tag, ++timeUs)), timeUs)
      await waitFor(() => indexed(tag), `the record after ${text}`)
      // Another valid record, so that any reconnection the bad message caused has happened.
      const next = `${tag}-next`
      jetstream.inject(JSON.stringify(tagEvent(next, ++timeUs)), timeUs)
      await waitFor(() => indexed(next), `the second record after ${text}`)
      assert.equal(jetstream.subscriptions(), opened, `${text} made the consumer reconnect`)
    }
  })

  it('after any messages, the next valid record is indexed', async () => {
    let n = 0
    await fc.assert(
      fc.asyncProperty(fc.array(messageArb, { minLength: 1, maxLength: 4 }), async (messages) => {
        const opened = jetstream.subscriptions()
        for (const message of messages) jetstream.inject(textOf(message, ++timeUs), timeUs)
        const tag = `s${++n}`
        jetstream.inject(JSON.stringify(tagEvent(tag, ++timeUs)), timeUs)
        await waitFor(() => indexed(tag), `tag ${tag} after ${messages.length} fuzzed messages`)
        jetstream.inject(JSON.stringify(tagEvent(`${tag}-next`, ++timeUs)), timeUs)
        await waitFor(() => indexed(`${tag}-next`), `tag ${tag}-next`)
        assert.equal(jetstream.subscriptions(), opened, 'no message made the consumer reconnect')
      }),
      { numRuns: 60 },
    )
    assert.ok(consumer.errors > 0, 'malformed messages are counted')
    assert.equal(jetstream.connections(), 1)
  })
})
