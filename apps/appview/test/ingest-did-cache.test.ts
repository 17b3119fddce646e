// The firehose's DID document cache: documents are kept between commits (no PLC request
// per commit), up to a bound, the oldest going first.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { DidDocument } from '@atproto/identity'
import { BoundedDidCache } from '../src/ingest/did-cache.ts'

const doc = (did: string): DidDocument => ({ id: did })

describe('BoundedDidCache', () => {
  it('keeps documents until the bound, then drops the least recently written', async () => {
    const cache = new BoundedDidCache({ maxEntries: 2, staleTtlMs: 60_000 })
    await cache.cacheDid('did:plc:a', doc('did:plc:a'))
    await cache.cacheDid('did:plc:b', doc('did:plc:b'))
    // Writing a again makes it the newest: b is now the oldest.
    await cache.cacheDid('did:plc:a', doc('did:plc:a'))
    await cache.cacheDid('did:plc:c', doc('did:plc:c'))
    assert.equal(cache.cache.size, 2)
    assert.equal(await cache.checkCache('did:plc:b'), null)
    const a = await cache.checkCache('did:plc:a')
    assert.equal(a?.doc.id, 'did:plc:a')
    assert.equal(a?.stale, false)
    assert.equal((await cache.checkCache('did:plc:c'))?.doc.id, 'did:plc:c')
  })
})
