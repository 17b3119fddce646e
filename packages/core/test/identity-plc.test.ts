import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  createIdentityResolver,
  getServiceEndpoint,
  IdentityNotFoundError,
  type IdentityResolver,
} from '@atcr/core/identity'
import {
  createPlcIdentity,
  ensurePlcCurrent,
  loadOrCreateDid,
  RotationKeyMissingError,
  RotationKeyNotAuthorizedError,
} from '@atcr/core/identity/plc'
import { startPlc, staticDns, type TestPlc } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'

describe('did:plc identity on a real PLC directory', () => {
  let plc: TestPlc
  let dir: string
  let resolver: IdentityResolver
  const lookup = staticDns().lookup

  before(async () => {
    plc = await startPlc()
    dir = await mkdtemp(join(tmpdir(), 'atcr-plc-'))
    // minRefreshIntervalMs 0: these tests re-read the directory right after each update.
    resolver = createIdentityResolver({
      mode: 'dev',
      plcUrl: plc.url,
      lookup,
      minRefreshIntervalMs: 0,
    })
  })
  after(async () => {
    await resolver.close()
    await plc.close()
    await rm(dir, { recursive: true, force: true })
  })

  const holdService = (url: string) => ({ atcr_hold: { type: 'AtcrHoldService', endpoint: url } })

  it('creates a DID whose document carries the signing key, PDS and extra services', async () => {
    const rotationKey = await Secp256k1Keypair.create()
    const signingKey = await Secp256k1Keypair.create()
    const didFile = join(dir, 'create', 'did.txt')
    const { did } = await createPlcIdentity({
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey,
      handle: 'hold.test',
      serviceEndpoint: 'https://hold.test',
      services: holdService('https://hold.test'),
      didFile,
    })
    assert.match(did, /^did:plc:[a-z2-7]{24}$/)
    assert.equal((await readFile(didFile, 'utf8')).trim(), did)

    const resolved = await resolver.resolveDid(did)
    assert.equal(resolved.signingKey, signingKey.did())
    assert.equal(resolved.pdsEndpoint, 'https://hold.test')
    assert.equal(resolved.handle, 'hold.test')
    assert.equal(
      getServiceEndpoint(resolved.document, 'atcr_hold', 'AtcrHoldService'),
      'https://hold.test',
    )

    // On the next boot the DID comes from did.txt, and nothing needs updating.
    const loaded = await loadOrCreateDid({ didFile, create: async () => assert.fail('exists') })
    assert.deepEqual(loaded, { did, source: 'file' })
    const result = await ensurePlcCurrent({
      did,
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey,
      handle: 'hold.test',
      serviceEndpoint: 'https://hold.test/',
      services: holdService('https://hold.test'),
    })
    assert.deepEqual(result, { updated: false, changes: [] })
  })

  it('brings the PLC document up to date after a signing key change and a URL change', async () => {
    const rotationKey = await Secp256k1Keypair.create()
    const firstKey = await Secp256k1Keypair.create()
    const { did } = await createPlcIdentity({
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey: firstKey,
      handle: 'old.test',
      serviceEndpoint: 'https://old.test',
      services: holdService('https://old.test'),
    })

    const secondKey = await Secp256k1Keypair.create()
    const keyChange = await ensurePlcCurrent({
      did,
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey: secondKey,
      handle: 'old.test',
      serviceEndpoint: 'https://old.test',
      services: holdService('https://old.test'),
    })
    assert.equal(keyChange.updated, true)
    assert.deepEqual(keyChange.changes, [
      { field: 'signingKey', from: firstKey.did(), to: secondKey.did() },
    ])
    assert.equal(await resolver.resolveSigningKey(did, { forceRefresh: true }), secondKey.did())

    const urlChange = await ensurePlcCurrent({
      did,
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey: secondKey,
      handle: 'new.test',
      serviceEndpoint: 'https://new.test',
      services: holdService('https://new.test'),
    })
    assert.equal(urlChange.updated, true)
    assert.deepEqual(
      urlChange.changes.map((change) => (change.field === 'service' ? change.id : change.field)),
      ['handle', 'atcr_hold', 'atproto_pds'],
    )
    const resolved = await resolver.resolveDid(did, { forceRefresh: true })
    assert.equal(resolved.pdsEndpoint, 'https://new.test')
    assert.equal(resolved.handle, 'new.test')
    // The old host's handle does not stay behind.
    assert.deepEqual(resolved.document.alsoKnownAs, ['at://new.test'])
    assert.equal(resolved.signingKey, secondKey.did())
    assert.equal(getServiceEndpoint(resolved.document, 'atcr_hold'), 'https://new.test')

    const again = await ensurePlcCurrent({
      did,
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey: secondKey,
      handle: 'new.test',
      serviceEndpoint: 'https://new.test',
      services: holdService('https://new.test'),
    })
    assert.deepEqual(again, { updated: false, changes: [] })

    // A host with no valid handle (an IP address): the document names none.
    const noHandle = await ensurePlcCurrent({
      did,
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey: secondKey,
      handle: null,
      serviceEndpoint: 'http://127.0.0.1:8080',
      services: holdService('http://127.0.0.1:8080'),
    })
    assert.deepEqual(noHandle.changes[0], {
      field: 'handle',
      from: ['at://new.test'],
      to: null,
    })
    const bare = await resolver.resolveDid(did, { forceRefresh: true })
    assert.deepEqual(bare.document.alsoKnownAs ?? [], [])
    assert.equal(bare.pdsEndpoint, 'http://127.0.0.1:8080')
  })

  it('refuses drift without a rotation key, and with a key that is not a rotation key', async () => {
    const rotationKey = await Secp256k1Keypair.create()
    const signingKey = await Secp256k1Keypair.create()
    const { did } = await createPlcIdentity({
      plcUrl: plc.url,
      mode: 'dev',
      rotationKey,
      signingKey,
      handle: 'drift.test',
      serviceEndpoint: 'https://drift.test',
    })
    const drifted = {
      did,
      plcUrl: plc.url,
      mode: 'dev' as const,
      signingKey,
      handle: 'drift.test',
      serviceEndpoint: 'https://moved.test',
    }

    // No drift, no rotation key: fine, nothing to sign.
    const current = await ensurePlcCurrent({ ...drifted, serviceEndpoint: 'https://drift.test' })
    assert.equal(current.updated, false)

    await assert.rejects(ensurePlcCurrent(drifted), (error: unknown) => {
      assert.ok(error instanceof RotationKeyMissingError)
      assert.equal(error.code, 'RotationKeyMissing')
      assert.deepEqual(
        error.changes.map((change) => change.field),
        ['service'],
      )
      assert.match(error.message, /no rotation key/)
      return true
    })

    const stranger = await Secp256k1Keypair.create()
    await assert.rejects(
      ensurePlcCurrent({ ...drifted, rotationKey: stranger }),
      (error: unknown) => {
        assert.ok(error instanceof RotationKeyNotAuthorizedError)
        assert.equal(error.rotationKey, stranger.did())
        return true
      },
    )
    // The signing key is not a rotation key either.
    await assert.rejects(
      ensurePlcCurrent({ ...drifted, rotationKey: signingKey }),
      RotationKeyNotAuthorizedError,
    )

    const resolved = await resolver.resolveDid(did, { forceRefresh: true })
    assert.equal(resolved.pdsEndpoint, 'https://drift.test', 'the document did not change')
  })

  it('reports an unknown DID as not found', async () => {
    const signingKey = await Secp256k1Keypair.create()
    await assert.rejects(
      ensurePlcCurrent({
        did: 'did:plc:unknownunknownunknownunk',
        plcUrl: plc.url,
        mode: 'dev',
        signingKey,
        handle: 'x.test',
        serviceEndpoint: 'https://x.test',
      }),
      IdentityNotFoundError,
    )
    await assert.rejects(
      resolver.resolveDid('did:plc:unknownunknownunknownunk'),
      IdentityNotFoundError,
    )
  })
})
