/**
 * Who may read and write blobs on a hold: anonymous callers, a stranger (a real account
 * that is not crew), crew with blob:read only, crew with blob:write, the owner and the
 * trusted AppView (a did:plc on the test PLC whose key the test holds), on a private and a
 * public hold; and the refusal of bad service tokens, each with its own error name.
 * User tokens are real: minted by the test PDS through com.atproto.server.getServiceAuth.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { crewRkey, NSID } from '@atcr/core/lexicons'
import { mintServiceAuthToken } from '@atcr/core/service-auth'
import type { TestAccount } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import {
  ANONYMOUS,
  getCrewMember,
  type HoldCaller,
  permissionsOf,
  requireCrewAdmin,
  requireOwner,
  requireRead,
  requireTrustedAppView,
  requireWrite,
} from '../src/access/index.ts'
import { XrpcError } from '../src/xrpc/error.ts'
import { putCrewRecord, storeBlob } from './hold-data.ts'
import { HoldFixture, type TestAppView, type TestHold } from './hold-harness.ts'
import { type Caller, getBlob, pdsToken, procedure, putPartToHold } from './hold-xrpc.ts'

const GET_BLOB = 'com.atproto.sync.getBlob'
// Not derived from the member DID: found by scanning the crew, as records written by other
// implementations (or imported from them) would be.
const WRITER_CREW_KEY = 'imported-writer'

let fixture: HoldFixture
let owner: TestAccount
let stranger: TestAccount
let reader: TestAccount
let writer: TestAccount
let appView: TestAppView
let appviewDid: string
let privateHold: TestHold
let publicHold: TestHold
let blobDigest: string

const appviewToken = async (hold: TestHold, lxm: string, options: { issuedAt?: number } = {}) =>
  (await appView.token(hold.did, lxm, options)).token

async function startHold(isPublic: boolean): Promise<TestHold> {
  const hold = await fixture.startHold({ public: isPublic })
  await putCrewRecord(hold.ctx, crewRkey(reader.did), reader.did, ['blob:read'])
  await putCrewRecord(hold.ctx, WRITER_CREW_KEY, writer.did, ['blob:read', 'blob:write'])
  blobDigest = await storeBlob(hold.ctx, Buffer.from('a layer both holds serve'))
  return hold
}

before(async () => {
  const started = await HoldFixture.start({
    accounts: ['acl-captain.test', 'acl-stranger.test', 'acl-reader.test', 'acl-writer.test'],
    appView: 'did:plc',
  })
  fixture = started
  ;[owner, stranger, reader, writer] = started.accounts
  appView = fixture.appView
  appviewDid = appView.did
  privateHold = await startHold(false)
  publicHold = await startHold(true)
})
after(() => fixture?.close())

type Who = 'anonymous' | 'stranger' | 'reader' | 'writer' | 'owner' | 'appview'
const everyone: Who[] = ['anonymous', 'stranger', 'reader', 'writer', 'owner', 'appview']

async function credential(who: Who, hold: TestHold, lxm: string): Promise<Caller> {
  switch (who) {
    case 'anonymous':
      return null
    case 'appview':
      return { token: await appviewToken(hold, lxm) }
    default:
      return { stranger, reader, writer, owner }[who]
  }
}

async function errorName(response: Response): Promise<string> {
  return ((await response.json()) as { error: string }).error
}

describe('blob reads (com.atproto.sync.getBlob)', () => {
  it('private hold: every authenticated caller reads, anonymous callers do not', async () => {
    for (const who of everyone) {
      const response = await getBlob(privateHold, blobDigest, {
        credential: await credential(who, privateHold, GET_BLOB),
      })
      if (who === 'anonymous') {
        assert.equal(response.status, 401, who)
        assert.equal(await errorName(response), 'AuthRequired')
      } else {
        // Allowed: a blob this small is answered with its bytes (storage.inline_max_bytes).
        assert.equal(response.status, 200, who)
        assert.equal(await response.text(), 'a layer both holds serve')
      }
    }
  })

  it('public hold: everyone reads, anonymous callers too', async () => {
    for (const who of everyone) {
      const response = await getBlob(publicHold, blobDigest, {
        credential: await credential(who, publicHold, GET_BLOB),
      })
      assert.equal(response.status, 200, who)
      assert.equal(await response.text(), 'a layer both holds serve')
    }
  })
})

describe('blob writes (the upload methods)', () => {
  const uploadMethods = [
    NSID.holdInitiateUpload,
    NSID.holdGetPartUploadUrl,
    NSID.holdUploadPart,
    NSID.holdCompleteUpload,
    NSID.holdAbortUpload,
  ]

  /** Calls a method as `who`; past authorization an unknown upload id is InvalidUploadId. */
  async function call(hold: TestHold, who: Who, nsid: string) {
    const cred = await credential(who, hold, nsid)
    const digest = `sha256:${'a'.repeat(64)}`
    const uploadId = 'unknown-upload'
    switch (nsid) {
      case NSID.holdUploadPart:
        return putPartToHold(hold, uploadId, 1, randomBytes(64), cred)
      case NSID.holdInitiateUpload:
        return procedure(hold, nsid, cred, { digest })
      case NSID.holdGetPartUploadUrl:
        return procedure(hold, nsid, cred, { uploadId, partNumber: 1 })
      case NSID.holdCompleteUpload:
        return procedure(hold, nsid, cred, {
          uploadId,
          digest,
          parts: [{ partNumber: 1, etag: 'e' }],
        })
      default:
        return procedure(hold, nsid, cred, { uploadId })
    }
  }

  for (const isPublic of [false, true]) {
    it(`${isPublic ? 'public' : 'private'} hold: only the owner and crew with blob:write write`, async () => {
      const hold = isPublic ? publicHold : privateHold
      for (const nsid of uploadMethods) {
        for (const who of everyone) {
          const result = await call(hold, who, nsid)
          const label = `${who} ${nsid}`
          if (who === 'anonymous') {
            assert.equal(result.status, 401, label)
            assert.equal(result.body.error, 'AuthRequired', label)
          } else if (who === 'writer' || who === 'owner') {
            if (nsid === NSID.holdInitiateUpload) {
              assert.equal(result.status, 200, label)
              assert.equal(typeof result.body.uploadId, 'string', label)
            } else {
              assert.equal(result.status, 400, label)
              assert.equal(result.body.error, 'InvalidUploadId', label)
            }
          } else {
            assert.equal(result.status, 403, label)
            assert.equal(result.body.error, 'Forbidden', label)
            assert.match(String(result.body.message), /./, label)
          }
        }
      }
    })
  }
})

describe('bad service tokens', () => {
  const bearer = (token: string): Caller => ({ token })

  /** Bad tokens for `hold`, each with the error name it must be refused with. */
  async function refusals(hold: TestHold, other: TestHold): Promise<[string, Caller, string][]> {
    const good = await pdsToken(writer, hold.did, GET_BLOB)
    const [header, payload, signature] = good.split('.') as [string, string, string]
    const flipped = Buffer.from(signature, 'base64url')
    flipped[5] = (flipped[5] ?? 0) ^ 0xff
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    return [
      [
        'a token for another service',
        bearer(await pdsToken(writer, other.did, GET_BLOB)),
        'BadJwtAudience',
      ],
      [
        'a token for another method',
        bearer(await pdsToken(writer, hold.did, NSID.holdInitiateUpload)),
        'BadJwtLexiconMethod',
      ],
      [
        'an expired token',
        bearer(
          await appviewToken(hold, GET_BLOB, {
            issuedAt: Math.floor(Date.now() / 1000) - 600,
          }),
        ),
        'JwtExpired',
      ],
      [
        'a tampered signature',
        bearer(`${header}.${payload}.${flipped.toString('base64url')}`),
        'BadJwtSignature',
      ],
      [
        'a token signed by a key that is not the issuer’s',
        bearer(
          await mintServiceAuthToken({
            iss: claims.iss,
            aud: hold.did,
            lxm: GET_BLOB,
            keypair: await Secp256k1Keypair.create(),
          }),
        ),
        'BadJwtSignature',
      ],
      ['not a JWT', bearer('not-a-jwt'), 'BadJwt'],
    ]
  }

  it('refuses them with 401 and the reason, on reads even of a public hold', async () => {
    for (const [hold, other] of [
      [privateHold, publicHold],
      [publicHold, privateHold],
    ] as const) {
      for (const [what, cred, error] of await refusals(hold, other)) {
        const response = await getBlob(hold, blobDigest, { credential: cred })
        assert.equal(response.status, 401, what)
        assert.equal(await errorName(response), error, what)
      }
    }
  })

  it('refuses them on writes', async () => {
    const token = await pdsToken(writer, publicHold.did, NSID.holdInitiateUpload)
    const result = await procedure(
      privateHold,
      NSID.holdInitiateUpload,
      { token },
      { digest: `sha256:${'b'.repeat(64)}` },
    )
    assert.equal(result.status, 401)
    assert.equal(result.body.error, 'BadJwtAudience')
    const wrongMethod = await putPartToHold(privateHold, 'x', 1, Buffer.from('x'), {
      token: await pdsToken(writer, privateHold.did, NSID.holdInitiateUpload),
    })
    assert.equal(wrongMethod.status, 401)
    assert.equal(wrongMethod.body.error, 'BadJwtLexiconMethod')
  })

  it('refuses other authorization schemes', async () => {
    const response = await fetch(
      `${privateHold.url}/xrpc/${GET_BLOB}?did=${encodeURIComponent(privateHold.did)}&cid=${blobDigest}`,
      { headers: { authorization: 'Basic dXNlcjpwYXNz' } },
    )
    assert.equal(response.status, 401)
    assert.equal(await errorName(response), 'InvalidToken')
  })
})

describe('access checks used by the other hold methods', () => {
  const as = (did: string | null, trustedAppView = false): HoldCaller => ({ did, trustedAppView })

  async function refused(promise: Promise<unknown> | (() => unknown), status: number) {
    const error = await (typeof promise === 'function'
      ? Promise.resolve().then(promise)
      : promise
    ).then(
      () => assert.fail('allowed'),
      (e: unknown) => e,
    )
    assert.ok(error instanceof XrpcError, String(error))
    assert.equal(error.status, status)
  }

  it('finds crew records by member, under their derived key or any other', async () => {
    const ctx = privateHold.ctx
    assert.equal((await getCrewMember(ctx, reader.did))?.rkey, crewRkey(reader.did))
    const found = await getCrewMember(ctx, writer.did)
    assert.equal(found?.rkey, WRITER_CREW_KEY)
    assert.equal(found?.value.member, writer.did)
    assert.equal(await getCrewMember(ctx, stranger.did), null)
  })

  it('gives the owner every permission, crew their grants, strangers none', async () => {
    const ctx = privateHold.ctx
    assert.deepEqual([...(await permissionsOf(ctx, owner.did))].sort(), [
      'blob:read',
      'blob:write',
      'crew:admin',
    ])
    assert.deepEqual([...(await permissionsOf(ctx, reader.did))], ['blob:read'])
    assert.deepEqual([...(await permissionsOf(ctx, writer.did))].sort(), [
      'blob:read',
      'blob:write',
    ])
    assert.equal((await permissionsOf(ctx, stranger.did)).size, 0)
  })

  it('requireCrewAdmin, requireOwner, requireTrustedAppView, requireWrite', async () => {
    const ctx = privateHold.ctx
    await putCrewRecord(privateHold.ctx, 'crew-admin', stranger.did, ['crew:admin'])
    try {
      assert.equal(await requireCrewAdmin(ctx, as(owner.did)), owner.did)
      assert.equal(await requireCrewAdmin(ctx, as(stranger.did)), stranger.did)
      await refused(requireCrewAdmin(ctx, as(writer.did)), 403)
      await refused(requireCrewAdmin(ctx, ANONYMOUS), 401)

      assert.equal(await requireOwner(ctx, as(owner.did)), owner.did)
      await refused(requireOwner(ctx, as(stranger.did)), 403)
      await refused(requireOwner(ctx, ANONYMOUS), 401)

      assert.equal(requireTrustedAppView(ctx, as(appviewDid, true)), appviewDid)
      await refused(() => requireTrustedAppView(ctx, as(appviewDid)), 403)
      await refused(() => requireTrustedAppView(ctx, as(owner.did)), 403)
      await refused(() => requireTrustedAppView(ctx, ANONYMOUS), 401)

      // The AppView may not write blobs as itself, even if its DID were crew.
      await refused(requireWrite(ctx, as(owner.did, true)), 403)
      await requireRead(ctx, as(appviewDid, true))
      await refused(requireRead(ctx, ANONYMOUS), 401)
      await requireRead(publicHold.ctx, ANONYMOUS)
    } finally {
      await privateHold.ctx.repo.writer.deleteRecord(NSID.holdCrew, 'crew-admin')
    }
  })
})
