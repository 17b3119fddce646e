import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startNetwork, type TestNetwork } from '../src/index.ts'

describe('testkit network', () => {
  let net: TestNetwork
  before(async () => {
    net = await startNetwork()
  })
  after(() => net?.close())

  it('creates a did:plc account on the local PLC, resolvable there', async () => {
    const alice = await net.pds.createAccount('alice.test')
    assert.match(alice.did, /^did:plc:/)
    const res = await fetch(`${net.plc.url}/${alice.did}`)
    assert.equal(res.status, 200)
    const doc = (await res.json()) as {
      alsoKnownAs: string[]
      service: { serviceEndpoint: string }[]
    }
    assert.deepEqual(doc.alsoKnownAs, ['at://alice.test'])
    assert.equal(doc.service[0]?.serviceEndpoint, net.pds.url)
  })

  it('binds its servers to loopback only', async () => {
    const address = net.pds.pds.server?.address()
    assert.ok(address && typeof address === 'object')
    assert.equal(address.address, '127.0.0.1')
  })
})
