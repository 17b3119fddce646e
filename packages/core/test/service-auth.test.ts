import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createIdentityResolver, type IdentityResolver } from '@atcr/core/identity'
import { createPlcIdentity, ensurePlcCurrent } from '@atcr/core/identity/plc'
import {
  mintServiceAuthToken,
  ServiceAuthError,
  type ServiceAuthErrorCode,
  VerifiedSignatures,
  verifyServiceAuthToken,
} from '@atcr/core/service-auth'
import { startNetwork, staticDns, type TestAccount, type TestNetwork } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'

const HOLD_DID = 'did:web:hold.test'
const APPVIEW_DID = 'did:web:appview.test'
const LXM = 'io.atcr.hold.initiateUpload'

async function refusedWith(promise: Promise<unknown>, code: ServiceAuthErrorCode): Promise<void> {
  const error = await promise.then(
    () => assert.fail(`accepted a token that should fail with ${code}`),
    (e: unknown) => e,
  )
  assert.ok(error instanceof ServiceAuthError, `expected ServiceAuthError, got ${error}`)
  assert.equal(error.code, code)
}

/** Replaces one payload claim, keeping the original signature. */
function withClaim(token: string, claim: string, value: unknown): string {
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  claims[claim] = value
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${signature}`
}

describe('service auth tokens', () => {
  let net: TestNetwork
  let alice: TestAccount
  let resolver: IdentityResolver
  // Our own issuer: a did:plc on the same PLC, whose keys we hold (as the hold would).
  let ownDid: string
  let ownKey: Secp256k1Keypair
  let ownRotationKey: Secp256k1Keypair

  const pdsToken = async (aud = HOLD_DID, lxm = LXM) =>
    (await alice.agent.com.atproto.server.getServiceAuth({ aud, lxm })).data.token

  const verify = (
    token: string,
    overrides: Partial<Parameters<typeof verifyServiceAuthToken>[1]> = {},
  ) => verifyServiceAuthToken(token, { audience: HOLD_DID, lxm: LXM, resolver, ...overrides })

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    resolver = createIdentityResolver({
      mode: 'dev',
      plcUrl: net.plc.url,
      lookup: staticDns().lookup,
      resolveTxt: staticDns().resolveTxt,
      minRefreshIntervalMs: 0,
    })
    ownKey = await Secp256k1Keypair.create({ exportable: true })
    ownRotationKey = await Secp256k1Keypair.create()
    ;({ did: ownDid } = await createPlcIdentity({
      plcUrl: net.plc.url,
      mode: 'dev',
      rotationKey: ownRotationKey,
      signingKey: ownKey,
      handle: 'hold.test',
      serviceEndpoint: 'https://hold.test',
    }))
  })
  after(async () => {
    await resolver.close()
    await net.close()
  })

  it('accepts a token minted by the real PDS for the user', async () => {
    const verified = await verify(await pdsToken())
    assert.equal(verified.iss, alice.did)
    assert.equal(verified.aud, HOLD_DID)
    assert.equal(verified.lxm, LXM)
    assert.ok(verified.exp > Date.now() / 1000)
    // Any of several audiences, and any method when the caller does not pin one.
    await verify(await pdsToken(), { audience: [APPVIEW_DID, HOLD_DID] })
    await verify(await pdsToken(), { lxm: null })
  })

  it('refuses a PDS token for another audience or another method', async () => {
    await refusedWith(verify(await pdsToken(APPVIEW_DID)), 'BadJwtAudience')
    await refusedWith(
      verify(await pdsToken(HOLD_DID, 'io.atcr.hold.deleteBlob')),
      'BadJwtLexiconMethod',
    )
  })

  it('refuses tampered and malformed tokens', async () => {
    const token = await pdsToken()
    const [header, payload, signature] = token.split('.') as [string, string, string]
    const flipped = Buffer.from(signature, 'base64url')
    flipped[10] = (flipped[10] ?? 0) ^ 0xff
    await refusedWith(
      verify(`${header}.${payload}.${flipped.toString('base64url')}`),
      'BadJwtSignature',
    )
    // A payload edit that keeps every claim acceptable still breaks the signature.
    await refusedWith(verify(withClaim(token, 'jti', 'replayed')), 'BadJwtSignature')
    // Claiming to be someone else: the other DID's key does not match.
    await refusedWith(verify(withClaim(token, 'iss', ownDid)), 'BadJwtSignature')

    await refusedWith(verify('not-a-jwt'), 'BadJwt')
    await refusedWith(verify(`${header}.${payload}`), 'BadJwt')
    await refusedWith(verify(`${header}.bm90IGpzb24.${signature}`), 'BadJwt')
    await refusedWith(verify(withClaim(token, 'exp', 'tomorrow')), 'BadJwt')
    await refusedWith(verify(withClaim(token, 'iss', 'alice')), 'BadJwtIss')
    await refusedWith(
      verify(withClaim(token, 'iss', 'did:plc:unknownunknownunknownunk')),
      'BadJwtIss',
    )
  })

  it('accepts our own token for a did:plc we created, and refuses expired or future ones', async () => {
    const now = Math.floor(Date.now() / 1000)
    const mint = (extra: Partial<Parameters<typeof mintServiceAuthToken>[0]> = {}) =>
      mintServiceAuthToken({ iss: ownDid, aud: HOLD_DID, lxm: LXM, keypair: ownKey, ...extra })

    const verified = await verify(await mint())
    assert.equal(verified.iss, ownDid)
    assert.ok(verified.exp - now >= 59 && verified.exp - now <= 61, 'default lifetime 60 s')

    await refusedWith(verify(await mint({ issuedAt: now - 3600 })), 'JwtExpired')
    // Expired 10 s ago: inside the default 30 s skew, outside a 5 s one.
    const recent = await mint({ issuedAt: now - 70 })
    await verify(recent)
    await refusedWith(verify(recent, { clockSkewSeconds: 5 }), 'JwtExpired')
    await refusedWith(verify(await mint({ issuedAt: now + 600 })), 'BadJwtIat')
    await refusedWith(verify(await mint({ lxm: undefined })), 'BadJwtLexiconMethod')
    await verify(await mint({ lxm: undefined }), { lxm: null })
    // Signed by a key the issuer's document does not name.
    await refusedWith(verify(await mint({ keypair: ownRotationKey })), 'BadJwtSignature')
    await assert.rejects(verify(await mint(), { clockSkewSeconds: 3600 }), RangeError)
  })

  it('re-resolves the issuer key once when the cached key no longer matches', async () => {
    const oldKey = ownKey
    await verify(
      await mintServiceAuthToken({ iss: ownDid, aud: HOLD_DID, lxm: LXM, keypair: oldKey }),
    )
    // The issuer rotates its signing key; our resolver still caches the old one.
    const newKey = await Secp256k1Keypair.create()
    const result = await ensurePlcCurrent({
      did: ownDid,
      plcUrl: net.plc.url,
      mode: 'dev',
      rotationKey: ownRotationKey,
      signingKey: newKey,
      handle: 'hold.test',
      serviceEndpoint: 'https://hold.test',
    })
    assert.equal(result.updated, true)
    assert.equal(await resolver.resolveSigningKey(ownDid), oldKey.did(), 'the old key is cached')

    const verified = await verify(
      await mintServiceAuthToken({ iss: ownDid, aud: HOLD_DID, lxm: LXM, keypair: newKey }),
    )
    assert.equal(verified.iss, ownDid)
    assert.equal(await resolver.resolveSigningKey(ownDid), newKey.did(), 'the cache was refreshed')
    await refusedWith(
      verify(await mintServiceAuthToken({ iss: ownDid, aud: HOLD_DID, lxm: LXM, keypair: oldKey })),
      'BadJwtSignature',
    )
    ownKey = newKey
  })

  it('remembers checked signatures, still checks the claims, and forgets a rotated key', async () => {
    const verifiedSignatures = new VerifiedSignatures()
    const signer = ownKey
    const token = await mintServiceAuthToken({
      iss: ownDid,
      aud: HOLD_DID,
      lxm: LXM,
      keypair: signer,
    })
    await verify(token, { verifiedSignatures })
    assert.equal(verifiedSignatures.has(token, signer.did()), true)
    await verify(token, { verifiedSignatures })
    await refusedWith(
      verify(token, { verifiedSignatures, lxm: 'io.atcr.hold.other' }),
      'BadJwtLexiconMethod',
    )
    await refusedWith(
      verify(token, { verifiedSignatures, audience: APPVIEW_DID }),
      'BadJwtAudience',
    )
    await refusedWith(
      verify(withClaim(token, 'jti', 'another'), { verifiedSignatures }),
      'BadJwtSignature',
    )

    // The issuer rotates its key: once the new key is known, the remembered token is not.
    const rotated = await Secp256k1Keypair.create()
    await ensurePlcCurrent({
      did: ownDid,
      plcUrl: net.plc.url,
      mode: 'dev',
      rotationKey: ownRotationKey,
      signingKey: rotated,
      handle: 'hold.test',
      serviceEndpoint: 'https://hold.test',
    })
    assert.equal(await resolver.resolveSigningKey(ownDid, { forceRefresh: true }), rotated.did())
    await refusedWith(verify(token, { verifiedSignatures }), 'BadJwtSignature')
    ownKey = rotated
  })
})
