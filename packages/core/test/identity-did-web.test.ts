import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  createIdentityResolver,
  DidDocumentInvalidError,
  didWebDocumentUrl,
  didWebFromUrl,
  didWebToUrl,
  getServiceEndpoint,
  HandleMismatchError,
  IdentityIncompleteError,
  IdentityNotFoundError,
  InvalidDidError,
  InvalidHandleError,
  SsrfBlockedError,
} from '@atcr/core/identity'
import { type DidWebServer, type StaticDnsTable, startDidWebServer, staticDns } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'

describe('did:web from and to URLs', () => {
  it('derives the DID from a public URL, encoding the port as %3A and the path with :', () => {
    assert.equal(didWebFromUrl('https://hold01.atcr.io'), 'did:web:hold01.atcr.io')
    assert.equal(didWebFromUrl('https://hold01.atcr.io/'), 'did:web:hold01.atcr.io')
    assert.equal(didWebFromUrl('http://172.28.0.3:8080'), 'did:web:172.28.0.3%3A8080')
    assert.equal(didWebFromUrl('http://localhost:5000/'), 'did:web:localhost%3A5000')
    assert.equal(didWebFromUrl('https://Example.COM:8443'), 'did:web:example.com%3A8443')
    assert.equal(didWebFromUrl('https://example.com/user/alice'), 'did:web:example.com:user:alice')
    assert.throws(() => didWebFromUrl('ftp://example.com'), InvalidDidError)
    assert.throws(() => didWebFromUrl('https://[::1]:8080'), InvalidDidError)
  })

  it('maps the DID back to the URL (http only for local hosts, only in dev mode)', () => {
    assert.equal(didWebToUrl('did:web:hold01.atcr.io').href, 'https://hold01.atcr.io/')
    assert.equal(didWebToUrl('did:web:localhost%3A1234').href, 'https://localhost:1234/')
    assert.equal(
      didWebToUrl('did:web:localhost%3A1234', { mode: 'dev' }).href,
      'http://localhost:1234/',
    )
    assert.equal(
      didWebToUrl('did:web:172.28.0.3%3A8080', { mode: 'dev' }).href,
      'http://172.28.0.3:8080/',
    )
    assert.equal(
      didWebToUrl('did:web:hold01.atcr.io', { mode: 'dev' }).href,
      'https://hold01.atcr.io/',
    )
    assert.equal(
      didWebToUrl('did:web:example.com:user:alice').href,
      'https://example.com/user/alice',
    )
    assert.equal(
      didWebDocumentUrl('did:web:example.com:user:alice').href,
      'https://example.com/user/alice/did.json',
    )
    assert.equal(
      didWebDocumentUrl('did:web:localhost%3A1234', { mode: 'dev' }).href,
      'http://localhost:1234/.well-known/did.json',
    )
    for (const url of ['https://hold01.atcr.io/', 'https://example.com:8443/a/b']) {
      assert.equal(didWebToUrl(didWebFromUrl(url)).href, url)
    }
    assert.throws(() => didWebToUrl('did:plc:abc'), InvalidDidError)
    assert.throws(() => didWebToUrl('did:web:exa mple.com'), InvalidDidError)
  })
})

describe('did:web resolution from a local server', () => {
  let server: DidWebServer
  let keypair: Secp256k1Keypair
  let rotated: Secp256k1Keypair

  const documentFor = (key: Secp256k1Keypair, handle = 'web.test') => ({
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: server.did,
    alsoKnownAs: [`at://${handle}`],
    verificationMethod: [
      {
        id: `${server.did}#atproto`,
        type: 'Multikey',
        controller: server.did,
        publicKeyMultibase: key.did().slice('did:key:'.length),
      },
    ],
    service: [
      { id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: `${server.url}/` },
      { id: '#atcr_hold', type: 'AtcrHoldService', serviceEndpoint: server.url },
    ],
  })

  // DNS is a table here (no name server is asked): `localhost` for the server, `*.test`
  // names unknown unless a test gives them TXT records.
  const devResolver = (
    options: Omit<Parameters<typeof createIdentityResolver>[0], 'mode'> = {},
    table: StaticDnsTable = {},
  ) => {
    const dns = staticDns(table)
    return createIdentityResolver({
      mode: 'dev',
      lookup: dns.lookup,
      resolveTxt: dns.resolveTxt,
      ...options,
    })
  }

  before(async () => {
    server = await startDidWebServer()
    keypair = await Secp256k1Keypair.create()
    rotated = await Secp256k1Keypair.create()
    server.setDocument(documentFor(keypair))
  })
  after(() => server.close())

  it('resolves did:web:localhost%3APORT to its key, PDS, handle and services', async () => {
    const resolver = devResolver()
    try {
      const resolved = await resolver.resolveDid(server.did)
      assert.equal(resolved.did, server.did)
      assert.equal(resolved.signingKey, keypair.did())
      assert.equal(resolved.pdsEndpoint, server.url)
      assert.equal(resolved.handle, 'web.test')
      assert.equal(getServiceEndpoint(resolved.document, 'atcr_hold'), server.url)
      assert.equal(
        getServiceEndpoint(resolved.document, '#atcr_hold', 'AtcrHoldService'),
        server.url,
      )
      assert.equal(getServiceEndpoint(resolved.document, 'atcr_hold', 'Other'), undefined)
      assert.equal(await resolver.resolveSigningKey(server.did), keypair.did())
    } finally {
      await resolver.close()
    }
  })

  it('refuses the same local did:web in production mode (http, loopback)', async () => {
    const dns = staticDns()
    const resolver = createIdentityResolver({ mode: 'production', lookup: dns.lookup })
    try {
      await assert.rejects(resolver.resolveDid(server.did), SsrfBlockedError)
    } finally {
      await resolver.close()
    }
  })

  it('caches documents, and refreshes on demand when a key changed', async () => {
    const resolver = devResolver({ minRefreshIntervalMs: 0 })
    const count = () => server.requests.filter((p) => p === '/.well-known/did.json').length
    try {
      server.setDocument(documentFor(keypair))
      const start = count()
      await resolver.resolveSigningKey(server.did)
      await resolver.resolveSigningKey(server.did)
      assert.equal(count() - start, 1, 'the second resolution is served from the cache')

      server.setDocument(documentFor(rotated))
      assert.equal(await resolver.resolveSigningKey(server.did), keypair.did(), 'still cached')
      const fresh = await resolver.resolveSigningKey(server.did, { forceRefresh: true })
      assert.equal(fresh, rotated.did())
      assert.equal(count() - start, 2)
    } finally {
      server.setDocument(documentFor(keypair))
      await resolver.close()
    }
  })

  it('does not let forced refreshes hammer the directory, and expires entries after the TTL', async () => {
    const resolver = devResolver({ cacheTtlMs: 150 })
    const count = () => server.requests.filter((p) => p === '/.well-known/did.json').length
    try {
      const start = count()
      await resolver.resolveDid(server.did)
      // Within the default 5 s refresh interval, a forced refresh reuses the cached document.
      await resolver.resolveDid(server.did, { forceRefresh: true })
      assert.equal(count() - start, 1)
      await sleep(200)
      await resolver.resolveDid(server.did)
      assert.equal(count() - start, 2, 'expired after the TTL')
    } finally {
      await resolver.close()
    }
  })

  it('refuses missing, foreign and incomplete documents with typed errors', async () => {
    const resolver = devResolver()
    try {
      server.setDocument(null)
      await assert.rejects(resolver.resolveDid(server.did), IdentityNotFoundError)

      server.setDocument({ ...documentFor(keypair), id: 'did:web:elsewhere.example' })
      await assert.rejects(resolver.resolveDid(server.did), DidDocumentInvalidError)

      server.setDocument({ ...documentFor(keypair), verificationMethod: [] })
      await assert.rejects(resolver.resolveIdentity(server.did), (error: unknown) => {
        assert.ok(error instanceof IdentityIncompleteError)
        assert.equal(error.missing, 'signingKey')
        return true
      })

      await assert.rejects(resolver.resolveDid('did:web:example.com:user:alice'), InvalidDidError)
      await assert.rejects(resolver.resolveDid('did:example:123'), InvalidDidError)
    } finally {
      server.setDocument(documentFor(keypair))
      await resolver.close()
    }
  })

  it('resolves a handle by DNS TXT only when the DID document claims it back', async () => {
    const resolver = devResolver(
      {},
      {
        txt: {
          '_atproto.web.test': [`did=${server.did}`],
          '_atproto.impostor.test': [`did=${server.did}`],
        },
      },
    )
    try {
      assert.equal(await resolver.resolveHandle('Web.TEST'), server.did)
      const identity = await resolver.resolveIdentity(server.did)
      assert.equal(identity.handle, 'web.test')
      assert.equal(identity.pdsEndpoint, server.url)

      await assert.rejects(resolver.resolveHandle('impostor.test'), HandleMismatchError)
      await assert.rejects(resolver.resolveHandle('not a handle'), InvalidHandleError)
      await assert.rejects(resolver.resolveHandle('host.invalid'), InvalidHandleError)
    } finally {
      await resolver.close()
    }
  })

  it('drops a claimed handle that does not point back at the DID', async () => {
    const resolver = devResolver()
    try {
      server.setDocument(documentFor(keypair, 'someone-else.test'))
      const identity = await resolver.resolveIdentity(server.did)
      assert.equal(identity.did, server.did)
      assert.equal(identity.handle, undefined)
    } finally {
      server.setDocument(documentFor(keypair))
      await resolver.close()
    }
  })
})
