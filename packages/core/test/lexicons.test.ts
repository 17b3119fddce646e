import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  BlobRef,
  digestFromManifestRkey,
  LexiconValidationError,
  lexicons,
  type ManifestRecord,
  manifestRkey,
  NSID,
  parseRepoPageRkey,
  parseTagRkey,
  RecordKeyError,
  type RecordNsid,
  type RecordTypes,
  repoPageRkey,
  SELF_RKEY,
  scanRkey,
  serverLexiconDocuments,
  statsRkey,
  tagRkey,
  validateInput,
  validateMessage,
  validateOutput,
  validateParams,
  validateRecord,
  validateRecordJson,
} from '@atcr/core/lexicons'
import { jsonToLex } from '@atproto/lexicon'
import { isValidRecordKey } from '@atproto/syntax'

const ALICE = 'did:plc:abcdefghijklmnopqrstuvwx'
const HOLD = 'did:web:hold.example.com'
const NOW = '2026-03-01T12:00:00.000Z'
const SHA256 = `sha256:${'a'.repeat(64)}`
const SHA512 = `sha512:${'b'.repeat(128)}`
const CID = 'bafyreihltcnuuyqp2jm24aqydpnlj7b6w3ogwrplomrjtg5rifv44mmjey'
const MANIFEST_URI = `at://${ALICE}/${NSID.manifest}/${'a'.repeat(64)}`

const blobJson = (mimeType: string, size = 1234) => ({
  $type: 'blob',
  ref: { $link: CID },
  mimeType,
  size,
})
const blob = (mimeType: string, size = 1234) => jsonToLex(blobJson(mimeType, size)) as BlobRef

// One valid record of every type, with every optional field the lexicon allows.
const validRecords: { [N in RecordNsid]: () => RecordTypes[N] } = {
  [NSID.manifest]: () => ({
    $type: NSID.manifest,
    repository: 'tools/app',
    digest: SHA256,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    schemaVersion: 2,
    createdAt: NOW,
    holdDid: HOLD,
    holdEndpoint: 'https://hold.example.com',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: 100, digest: SHA256 },
    layers: [
      {
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        size: 5_000_000_000,
        digest: SHA256,
        urls: ['https://example.com/layer'],
        annotations: { 'org.opencontainers.image.title': 'layer' },
      },
    ],
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 500,
        digest: SHA256,
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8', osFeatures: ['x'] },
      },
    ],
    subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, digest: SHA256 },
    annotations: { 'org.opencontainers.image.title': 'My App' },
    manifestBlob: blob('application/vnd.oci.image.manifest.v1+json'),
  }),
  [NSID.tag]: () => ({
    $type: NSID.tag,
    repository: 'tools/app',
    tag: 'latest',
    manifest: MANIFEST_URI,
    manifestDigest: SHA256,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    updatedAt: NOW,
  }),
  [NSID.repoPage]: () => ({
    $type: NSID.repoPage,
    repository: 'app',
    createdAt: NOW,
    updatedAt: NOW,
    description: '# App\n\nIt runs.',
    userEdited: true,
    avatar: blob('image/png', 3_000_000),
  }),
  [NSID.sailorProfile]: () => ({
    $type: NSID.sailorProfile,
    createdAt: NOW,
    updatedAt: NOW,
    defaultHold: HOLD,
    autoRemoveUntagged: false,
    ociClient: 'podman',
    registryDomain: 'registry.example.com',
  }),
  [NSID.sailorStar]: () => ({
    $type: NSID.sailorStar,
    subject: `at://${ALICE}/${NSID.repoPage}/app`,
    createdAt: NOW,
  }),
  [NSID.sailorWebhook]: () => ({
    $type: NSID.sailorWebhook,
    holdDid: HOLD,
    triggers: 0x01 | 0x04,
    privateCid: CID,
    createdAt: NOW,
    updatedAt: NOW,
  }),
  [NSID.holdCaptain]: () => ({
    $type: NSID.holdCaptain,
    owner: ALICE,
    public: true,
    allowAllCrew: false,
    enableBlueskyPosts: false,
    deployedAt: NOW,
    region: 'eu-west-1',
    successor: 'did:web:hold2.example.com',
  }),
  [NSID.holdCrew]: () => ({
    $type: NSID.holdCrew,
    member: ALICE,
    role: 'write',
    permissions: ['blob:read', 'blob:write'],
    addedAt: NOW,
    tier: 'deckhand',
  }),
  [NSID.holdLayer]: () => ({
    $type: NSID.holdLayer,
    digest: SHA256,
    size: 42,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    manifest: MANIFEST_URI,
    userDid: ALICE,
    createdAt: NOW,
  }),
  [NSID.holdStats]: () => ({
    $type: NSID.holdStats,
    ownerDid: ALICE,
    repository: 'tools/app',
    pullCount: 0,
    pushCount: 3,
    updatedAt: NOW,
    lastPush: NOW,
    lastPull: NOW,
  }),
  [NSID.holdScan]: () => ({
    $type: NSID.holdScan,
    manifest: MANIFEST_URI,
    repository: 'tools/app',
    userDid: ALICE,
    critical: 0,
    high: 1,
    medium: 2,
    low: 3,
    total: 6,
    scannerVersion: 'atcr-scanner-v1.0.0',
    scannedAt: NOW,
    status: 'ok',
    sbomBlob: blob('application/spdx+json'),
    vulnReportBlob: blob('application/vnd.atcr.vulnerabilities+json'),
  }),
}

function rejects(run: () => unknown, message: string | RegExp): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof LexiconValidationError, `not a LexiconValidationError: ${err}`)
    if (typeof message === 'string') assert.equal(err.message, message)
    else assert.match(err.message, message)
    return true
  })
}

describe('validateRecord', () => {
  for (const [nsid, make] of Object.entries(validRecords)) {
    test(`accepts a valid ${nsid} record`, () => {
      const record = make()
      const validated = validateRecord(nsid as RecordNsid, record)
      assert.deepEqual(validated, record)
    })
  }

  test('returns the record typed by its collection', () => {
    const record: ManifestRecord = validateRecord(NSID.manifest, validRecords[NSID.manifest]())
    assert.equal(record.layers?.[0]?.size, 5_000_000_000)
  })

  test('refuses a record whose $type is another string, whatever the string', () => {
    for (const $type of ['#', '#main', 'io.atcr.tag', '', 'x'.repeat(5000)]) {
      rejects(
        () => validateRecord(NSID.manifest, { ...validRecords[NSID.manifest](), $type }),
        /^Invalid \$type: must be io\.atcr\.manifest, got .{0,100}$/,
      )
    }
  })

  test('names the missing required field', () => {
    const { digest: _, ...record } = validRecords[NSID.manifest]()
    rejects(() => validateRecord(NSID.manifest, record), 'Record must have the property "digest"')
    const { deployedAt: __, ...captain } = validRecords[NSID.holdCaptain]()
    rejects(
      () => validateRecord(NSID.holdCaptain, captain),
      'Record must have the property "deployedAt"',
    )
  })

  test('names the over-long field', () => {
    const record = { ...validRecords[NSID.manifest](), repository: 'a'.repeat(256) }
    rejects(
      () => validateRecord(NSID.manifest, record),
      'Record/repository must not be longer than 255 characters',
    )
    const tag = { ...validRecords[NSID.tag](), tag: 't'.repeat(129) }
    rejects(
      () => validateRecord(NSID.tag, tag),
      'Record/tag must not be longer than 128 characters',
    )
  })

  test('a sha512 digest does not fit the published 128-character digest fields', () => {
    // 'sha512:' plus 128 hex digits is 135 characters. The record key (manifestRkey) fits; the
    // digest fields of the published lexicons do not, so sha512 manifests cannot be recorded.
    rejects(
      () => validateRecord(NSID.manifest, { ...validRecords[NSID.manifest](), digest: SHA512 }),
      'Record/digest must not be longer than 128 characters',
    )
  })

  test('names fields of the wrong type, also inside nested objects', () => {
    rejects(
      () => validateRecord(NSID.manifest, { ...validRecords[NSID.manifest](), schemaVersion: '2' }),
      'Record/schemaVersion must be an integer',
    )
    const manifest = validRecords[NSID.manifest]()
    manifest.layers = [{ mediaType: 'x', size: 1.5, digest: SHA256 }]
    rejects(
      () => validateRecord(NSID.manifest, manifest),
      'Record/layers/0/size must be an integer',
    )
    const index = validRecords[NSID.manifest]()
    index.manifests = [
      { mediaType: 'x', size: 1, digest: SHA256, platform: { os: 'linux' } as never },
    ]
    rejects(
      () => validateRecord(NSID.manifest, index),
      'Record/manifests/0/platform must have the property "architecture"',
    )
    rejects(
      () =>
        validateRecord(NSID.holdCaptain, { ...validRecords[NSID.holdCaptain](), public: 'yes' }),
      'Record/public must be a boolean',
    )
  })

  test('rejects bad did, datetime and at-uri formats', () => {
    rejects(
      () => validateRecord(NSID.holdCrew, { ...validRecords[NSID.holdCrew](), member: 'alice' }),
      /^Record\/member must be a valid did/,
    )
    rejects(
      () =>
        validateRecord(NSID.sailorStar, { ...validRecords[NSID.sailorStar](), createdAt: 'now' }),
      /^Record\/createdAt must be an valid atproto datetime/,
    )
    rejects(
      () =>
        validateRecord(NSID.tag, { ...validRecords[NSID.tag](), manifest: 'https://example.com' }),
      /^Record\/manifest must be a valid at-uri/,
    )
  })

  test('enforces minimum, and the blob accept and maxSize constraints', () => {
    rejects(
      () => validateRecord(NSID.holdStats, { ...validRecords[NSID.holdStats](), pullCount: -1 }),
      'Record/pullCount can not be less than 0',
    )
    rejects(
      () =>
        validateRecord(NSID.repoPage, {
          ...validRecords[NSID.repoPage](),
          avatar: blob('image/gif'),
        }),
      'Record/avatar mimeType must be one of image/png, image/jpeg, image/webp, not image/gif',
    )
    rejects(
      () =>
        validateRecord(NSID.repoPage, {
          ...validRecords[NSID.repoPage](),
          avatar: blob('image/png', 3_000_001),
        }),
      'Record/avatar must not be larger than 3000000 bytes',
    )
    rejects(
      () =>
        validateRecord(NSID.manifest, { ...validRecords[NSID.manifest](), manifestBlob: 'nope' }),
      'Record/manifestBlob should be a blob ref',
    )
  })

  test('checks $type against the collection', () => {
    const { $type: _, ...untyped } = validRecords[NSID.tag]()
    rejects(() => validateRecord(NSID.tag, untyped), 'Record/$type must be a string')
    rejects(() => validateRecord(NSID.manifest, validRecords[NSID.tag]()), /Invalid \$type/)
    rejects(() => validateRecord(NSID.tag, 'latest'), 'Record must be an object')
  })

  test('the error says which lexicon and which part failed', () => {
    try {
      validateRecord(NSID.tag, {})
      assert.fail('accepted an empty record')
    } catch (err) {
      assert.ok(err instanceof LexiconValidationError)
      assert.equal(err.nsid, NSID.tag)
      assert.equal(err.target, 'record')
      assert.equal(err.name, 'LexiconValidationError')
    }
  })

  test('validateRecordJson reads records in JSON form, blobs included', () => {
    const json = JSON.parse(
      JSON.stringify({ ...validRecords[NSID.repoPage](), avatar: blobJson('image/webp', 10) }),
    )
    const page = validateRecordJson(NSID.repoPage, json)
    assert.ok(page.avatar instanceof BlobRef)
    assert.equal(page.avatar.ref.toString(), CID)
    rejects(
      () => validateRecordJson(NSID.repoPage, { ...json, avatar: blobJson('text/html') }),
      /^Record\/avatar mimeType must be one of/,
    )
  })
})

describe('hold method validation', () => {
  test('accepts valid inputs of every JSON procedure', () => {
    assert.deepEqual(validateInput(NSID.holdInitiateUpload, { digest: SHA256 }), { digest: SHA256 })
    validateInput(NSID.holdGetPartUploadUrl, { uploadId: 'u1', partNumber: 1 })
    validateInput(NSID.holdCompleteUpload, {
      uploadId: 'u1',
      digest: SHA256,
      parts: [{ partNumber: 1, etag: '"abc"' }],
    })
    validateInput(NSID.holdAbortUpload, { uploadId: 'u1' })
    validateInput(NSID.holdNotifyManifest, {
      repository: 'tools/app',
      userDid: ALICE,
      manifestDigest: SHA256,
      tag: 'latest',
      manifest: {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        config: { digest: SHA256, size: 1 },
        layers: [{ digest: SHA256, size: 2, mediaType: 'x' }],
        manifests: [
          {
            digest: SHA256,
            size: 3,
            mediaType: 'y',
            platform: { os: 'linux', architecture: 'amd64' },
          },
        ],
      },
    })
    validateInput(NSID.holdRequestCrew, {})
    validateInput(NSID.holdDeleteUserData, {})
    validateInput(NSID.holdSetStats, { ownerDid: ALICE, repository: 'app', pullCount: 7 })
    validateInput(NSID.holdUpdateCrewTier, { userDid: ALICE, tierRank: 0 })
  })

  test('applies lexicon defaults', () => {
    const push = validateInput(NSID.holdNotifyManifest, {
      repository: 'app',
      userDid: ALICE,
      manifestDigest: SHA256,
      manifest: {},
    })
    assert.equal(push.operation, 'push')
    assert.equal(validateInput(NSID.holdRequestCrew, {}).role, 'member')
    const url = validateOutput(NSID.holdGetPartUploadUrl, { url: 'https://s3.example.com/p?x=1' })
    assert.equal(url.method, 'PUT')
  })

  test('rejects bad inputs, naming the field', () => {
    // A streamed upload names its digest only at completeUpload (docs/hold.md).
    assert.deepEqual(validateInput(NSID.holdInitiateUpload, {}), {})
    rejects(
      () => validateInput(NSID.holdGetPartUploadUrl, { partNumber: 1 }),
      'Input must have the property "uploadId"',
    )
    rejects(
      () => validateInput(NSID.holdGetPartUploadUrl, { uploadId: 'u1', partNumber: 0 }),
      'Input/partNumber can not be less than 1',
    )
    rejects(
      () => validateInput(NSID.holdCompleteUpload, { uploadId: 'u1', digest: SHA256, parts: [{}] }),
      'Input/parts/0 must have the property "partNumber"',
    )
    rejects(
      () => validateInput(NSID.holdUpdateCrewTier, { userDid: 'nobody', tierRank: 1 }),
      /^Input\/userDid must be a valid did/,
    )
    rejects(
      () => validateInput(NSID.holdUpdateCrewTier, { userDid: ALICE, tierRank: -1 }),
      'Input/tierRank can not be less than 0',
    )
    rejects(() => validateInput(NSID.holdAbortUpload, 'u1'), 'Input must be an object')
  })

  test('validates query parameters', () => {
    assert.deepEqual(validateParams(NSID.holdGetQuota, { userDid: ALICE }), { userDid: ALICE })
    rejects(() => validateParams(NSID.holdGetQuota, {}), 'Params must have the property "userDid"')
    rejects(
      () => validateParams(NSID.holdGetLayersForManifest, { manifest: 'sha256:abc' }),
      /^manifest must be a valid at-uri/,
    )
    validateParams(NSID.holdSubscribeScanJobs, { cursor: -1 })
  })

  test('validates outputs, including listTiers', () => {
    const tiers = validateOutput(NSID.holdListTiers, {
      tiers: [
        { name: 'deckhand', rank: 0, limit: 5 * 1024 ** 3, default: true },
        { name: 'quartermaster', rank: 1, default: false, description: 'No limit' },
      ],
    })
    assert.equal(tiers.tiers[1]?.limit, undefined)
    rejects(
      () => validateOutput(NSID.holdListTiers, { tiers: [{ name: 'x', rank: 0 }] }),
      'Output/tiers/0 must have the property "default"',
    )
    rejects(
      () =>
        validateOutput(NSID.holdListTiers, {
          tiers: [{ name: 'x'.repeat(65), rank: 0, default: true }],
        }),
      'Output/tiers/0/name must not be longer than 64 characters',
    )
    rejects(
      () => validateOutput(NSID.holdListTiers, { tiers: [{ name: 'x', rank: -1, default: true }] }),
      'Output/tiers/0/rank can not be less than 0',
    )
    validateOutput(NSID.holdGetQuota, {
      userDid: ALICE,
      uniqueBlobs: 2,
      totalSize: 10,
      tier: 'bosun',
    })
    validateOutput(NSID.holdCompleteUpload, { status: 'completed', digest: SHA256 })
    rejects(
      () => validateOutput(NSID.holdCompleteUpload, { status: 'done', digest: SHA256 }),
      /^Output\/status must be completed/,
    )
    validateOutput(NSID.holdUploadPart, { etag: 'e' })
    validateOutput(NSID.holdExportUserData, {
      exportedAt: NOW,
      holdDid: HOLD,
      userDid: ALICE,
      isCaptain: false,
      crewRecord: { role: 'write', permissions: ['blob:read'], addedAt: NOW },
      layerRecords: [{ digest: SHA256, size: 1, manifest: MANIFEST_URI, createdAt: NOW }],
      statsRecords: [{ repository: 'app', pullCount: 1, pushCount: 1, updatedAt: NOW }],
      blueskyPosts: [],
    })
  })

  test('getLayersForManifest returns layer records, checked like records', () => {
    const layer = validRecords[NSID.holdLayer]()
    assert.deepEqual(validateOutput(NSID.holdGetLayersForManifest, { layers: [layer] }), {
      layers: [layer],
    })
    rejects(
      () => validateOutput(NSID.holdGetLayersForManifest, { layers: [{ ...layer, size: 'big' }] }),
      'Output/layers/0/size must be an integer',
    )
  })

  test('serverLexiconDocuments gives fresh copies that load into a separate Lexicons', () => {
    const a = serverLexiconDocuments()
    const b = serverLexiconDocuments()
    assert.notEqual(a[0], b[0])
    assert.deepEqual(a, b)
    assert.equal(a.length, [...lexicons].length)
  })

  test('validates scan job messages', () => {
    const job = {
      $type: `${NSID.holdSubscribeScanJobs}#scanJob`,
      type: 'scan_job',
      seq: 1,
      digest: SHA256,
      repository: 'app',
      userDid: ALICE,
      holdDid: HOLD,
      holdEndpoint: 'https://hold.example.com',
    }
    assert.equal(validateMessage(NSID.holdSubscribeScanJobs, job).digest, SHA256)
    rejects(
      () => validateMessage(NSID.holdSubscribeScanJobs, { ...job, seq: undefined }),
      'Message must have the property "seq"',
    )
  })
})

describe('record keys', () => {
  test('manifest and scan keys are the digest hex, for sha256 and sha512', () => {
    assert.equal(manifestRkey(SHA256), 'a'.repeat(64))
    const long = manifestRkey(SHA512)
    assert.equal(long.length, 128)
    assert.ok(isValidRecordKey(long))
    assert.equal(scanRkey(SHA512), long)
    assert.equal(digestFromManifestRkey(long), SHA512)
    assert.equal(digestFromManifestRkey(manifestRkey(SHA256)), SHA256)
    for (const bad of [
      'a'.repeat(64),
      `sha256:${'A'.repeat(64)}`,
      'sha256:abc',
      `md5:${'a'.repeat(32)}`,
    ]) {
      assert.throws(() => manifestRkey(bad), RecordKeyError)
    }
    assert.throws(() => digestFromManifestRkey('abc'), RecordKeyError)
  })

  test('tag keys join repository and tag reversibly', () => {
    assert.equal(tagRkey('tools/app', 'latest'), 'tools~app:latest')
    assert.equal(tagRkey('app', 'v1.0.0'), 'app:v1.0.0')
    for (const [repository, tag] of [
      ['tools/app', 'latest'],
      ['a/b/c-d_e.f', 'V1.2_3-rc.1'],
      ['x'.repeat(255), 't'.repeat(128)],
    ] as const) {
      const rkey = tagRkey(repository, tag)
      assert.ok(isValidRecordKey(rkey), rkey)
      assert.deepEqual(parseTagRkey(rkey), { repository, tag })
    }
    assert.throws(() => tagRkey('a~b', 'x'), RecordKeyError)
    assert.throws(() => tagRkey('a:b', 'x'), RecordKeyError)
    assert.throws(() => tagRkey('app', ''), RecordKeyError)
    assert.throws(() => tagRkey('app', 'a b'), RecordKeyError)
    assert.throws(() => parseTagRkey('latest'), RecordKeyError)
    assert.throws(() => parseTagRkey(':latest'), RecordKeyError)
    assert.throws(() => parseTagRkey('app:'), RecordKeyError)
  })

  test('stats keys are lowercase unpadded base32 of the first 16 bytes of sha256', () => {
    // Computed with Python: base64.b32encode(hashlib.sha256(b"did:plc:abc123/myapp")
    //   .digest()[:16]).decode().rstrip("=").lower()
    assert.equal(statsRkey('did:plc:abc123', 'myapp'), 'fljzitev6d5cs3t4rbui7tkiee')
    assert.equal(statsRkey('did:web:example.com', 'tools/app'), '7e6bcrrfh2j4xppbjn3ypdfr2i')
    const rkey = statsRkey(ALICE, 'tools/app')
    assert.match(rkey, /^[a-z2-7]{26}$/)
    assert.ok(isValidRecordKey(rkey))
    assert.notEqual(statsRkey(ALICE, 'tools'), statsRkey(ALICE, 'tools/app'))
  })

  test('repository page keys are the repository name', () => {
    assert.equal(repoPageRkey('app'), 'app')
    assert.equal(repoPageRkey('tools/app'), 'tools~app')
    assert.equal(parseRepoPageRkey('tools~app'), 'tools/app')
    assert.throws(() => repoPageRkey('..'), RecordKeyError)
    assert.throws(() => repoPageRkey(''), RecordKeyError)
  })

  test('singletons use self', () => {
    assert.equal(SELF_RKEY, 'self')
    assert.ok(isValidRecordKey(SELF_RKEY))
  })
})
