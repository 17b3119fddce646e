import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { startNetwork, type TestAccount, type TestNetwork } from '@atcr/testkit'
import {
  createIdentityResolver,
  HandleMismatchError,
  IdentityNotFoundError,
} from '../src/identity/index.ts'

describe('handle resolution through an XRPC handle resolver', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let liar: Server
  let liarUrl: string

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    // A resolver that answers bob's DID for every handle.
    liar = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ did: bob.did }))
    })
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve))
    const address = liar.address()
    liarUrl = `http://localhost:${typeof address === 'object' && address ? address.port : 0}`
  })
  after(async () => {
    liar?.close()
    await net?.close()
  })

  it('resolves a handle with the PDS and checks it against the DID document', async () => {
    const resolver = createIdentityResolver({
      mode: 'dev',
      plcUrl: net.plc.url,
      handleResolver: net.pds.url,
    })
    try {
      assert.equal(await resolver.resolveHandle('alice.test'), alice.did)
      const identity = await resolver.resolveIdentity('ALICE.test')
      assert.equal(identity.did, alice.did)
      assert.equal(identity.handle, 'alice.test')
      await assert.rejects(resolver.resolveHandle('nobody.test'), IdentityNotFoundError)
    } finally {
      await resolver.close()
    }
  })

  it('refuses an answer whose DID document does not claim the handle', async () => {
    const resolver = createIdentityResolver({
      mode: 'dev',
      plcUrl: net.plc.url,
      handleResolver: liarUrl,
    })
    try {
      await assert.rejects(resolver.resolveHandle('alice.test'), HandleMismatchError)
      assert.equal(await resolver.resolveHandle('bob.test'), bob.did)
    } finally {
      await resolver.close()
    }
  })
})
