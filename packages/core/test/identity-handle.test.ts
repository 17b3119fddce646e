import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  createIdentityResolver,
  HandleMismatchError,
  IdentityNotFoundError,
  type IdentityResolver,
} from '@atcr/core/identity'
import { startNetwork, staticDns, type TestAccount, type TestNetwork } from '@atcr/testkit'

// What stands in for the internet here: `*.test` names resolve to 127.0.0.1 through an
// injected lookup (no name server is asked), and the dev-mode `handleWellKnown` option sends
// `/.well-known/atproto-did` to the PDS's port over http. The request still carries
// `Host: alice.test`, so the real PDS answers from its own account table, exactly as it
// would behind https://alice.test. TXT records come from a table too.
describe('handle resolution against a real PDS', () => {
  let net: TestNetwork
  let alice: TestAccount
  let resolver: IdentityResolver
  let dns: ReturnType<typeof staticDns>

  const makeResolver = (mode: 'dev' | 'production' = 'dev') =>
    createIdentityResolver({
      mode,
      plcUrl: net.plc.url,
      lookup: dns.lookup,
      resolveTxt: dns.resolveTxt,
      handleWellKnown: { protocol: 'http:', port: Number(new URL(net.pds.url).port) },
      minRefreshIntervalMs: 0,
    })

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    dns = staticDns({
      addresses: { '*.test': ['127.0.0.1'] },
      // A handle that claims alice's DID in DNS, though alice's document does not claim it.
      txt: { '_atproto.impostor.test': [`did=${alice.did}`] },
    })
    resolver = makeResolver()
  })
  after(async () => {
    await resolver.close()
    await net.close()
  })

  it('resolves a PDS account handle to its DID, PDS and signing key', async () => {
    assert.equal(await resolver.resolveHandle('alice.test'), alice.did)
    const identity = await resolver.resolveIdentity('ALICE.Test')
    assert.equal(identity.did, alice.did)
    assert.equal(identity.handle, 'alice.test')
    assert.equal(identity.pdsEndpoint, net.pds.url)
    const data = (await (await fetch(`${net.plc.url}/${alice.did}/data`)).json()) as {
      verificationMethods: { atproto: string }
    }
    assert.equal(identity.signingKey, data.verificationMethods.atproto)
  })

  it('resolves the DID back to the handle, verified both ways', async () => {
    const identity = await resolver.resolveIdentity(alice.did)
    assert.equal(identity.handle, 'alice.test')
    assert.equal(identity.pdsEndpoint, net.pds.url)
  })

  it('refuses a handle whose DID document does not claim it', async () => {
    await assert.rejects(resolver.resolveHandle('impostor.test'), (error: unknown) => {
      assert.ok(error instanceof HandleMismatchError)
      assert.equal(error.did, alice.did)
      return true
    })
    await assert.rejects(resolver.resolveIdentity('impostor.test'), HandleMismatchError)
  })

  it('reports a handle nobody has as not found', async () => {
    await assert.rejects(resolver.resolveHandle('nobody.test'), IdentityNotFoundError)
  })

  it('follows a handle change once the cache is refreshed', async () => {
    const bob = await net.pds.createAccount('bob.test')
    assert.equal(await resolver.resolveHandle('bob.test'), bob.did)
    await bob.agent.com.atproto.identity.updateHandle({ handle: 'robert.test' })

    assert.equal(await resolver.resolveHandle('robert.test'), bob.did)
    const identity = await resolver.resolveIdentity(bob.did, { forceRefresh: true })
    assert.equal(identity.handle, 'robert.test')
    await assert.rejects(
      resolver.resolveHandle('bob.test', { forceRefresh: true }),
      IdentityNotFoundError,
    )
  })

  it('in production mode, will not fetch atproto-did over http from loopback', async () => {
    const production = makeResolver('production')
    try {
      await assert.rejects(production.resolveHandle('alice.test'), IdentityNotFoundError)
    } finally {
      await production.close()
    }
  })
})
