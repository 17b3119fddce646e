// Property-based fuzzing (fast-check) of what a manifest PUT parses before anything is
// written: the manifest validator and the io.atcr.manifest record built from it, and the
// Content-Range of an upload chunk. Whatever the bytes, the answer is the document (which then
// records, or is refused with MANIFEST_INVALID / MANIFEST_BLOB_UNKNOWN) or MANIFEST_INVALID;
// a Content-Range is read or refused with RANGE_INVALID (416). Never another exception.
// The seed is random per run; fast-check prints it (and the shrunk input) when a property fails.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isDigest, OciError } from '@atcr/core/oci'
import fc from 'fast-check'
import { parseManifest, requiredBlobs } from '../src/records/manifest-document.ts'
import { buildManifestRecord } from '../src/records/stores.ts'
import { parseContentRange } from '../src/registry/http.ts'
import {
  digestArb,
  imageManifestArb,
  indexArb,
  manifestBytesArb,
  manifestWithLayers,
  mediaTypeArb,
} from './manifest-arbitraries.ts'

const HOLD = 'did:web:hold.test'

function expectOci(error: unknown, ...codes: string[]): OciError {
  assert.ok(
    error instanceof OciError && codes.includes(error.code),
    `expected ${codes.join('/')}, got ${(error as Error)?.stack ?? String(error)}`,
  )
  assert.ok(error.status >= 400 && error.status < 500, `status ${error.status}`)
  return error
}

/** Parses and records like a manifest PUT does; returns the refusal, if any. */
function parseAndRecord(bytes: Uint8Array, contentType: string | undefined): OciError | undefined {
  let document: ReturnType<typeof parseManifest>
  try {
    document = parseManifest(bytes, contentType)
  } catch (error) {
    return expectOci(error, 'MANIFEST_INVALID')
  }
  for (const d of [document.config, document.subject, ...document.layers, ...document.manifests]) {
    if (d === undefined) continue
    assert.ok(isDigest(d.digest), `descriptor digest ${d.digest} was let through`)
    assert.ok(Number.isSafeInteger(d.size) && d.size >= 0)
  }
  assert.ok(document.kind === 'index' || document.config !== undefined)
  requiredBlobs(document)
  try {
    buildManifestRecord({
      repository: 'tools/app',
      digest: `sha256:${'0'.repeat(64)}`,
      document,
      sha256Of: new Map(),
      holdDid: HOLD,
      createdAt: new Date().toISOString(),
    })
  } catch (error) {
    return expectOci(error, 'MANIFEST_INVALID', 'MANIFEST_BLOB_UNKNOWN')
  }
  return undefined
}

describe('manifest validation', () => {
  test('valid manifests and indexes parse and record', () => {
    fc.assert(
      fc.property(fc.oneof(imageManifestArb, indexArb), (manifest) => {
        const refused = parseAndRecord(Buffer.from(JSON.stringify(manifest)), undefined)
        assert.equal(refused, undefined, refused?.message)
      }),
      { numRuns: 1000 },
    )
  })

  test('any bytes with any Content-Type are a manifest or MANIFEST_INVALID, never another error', () => {
    fc.assert(
      fc.property(manifestBytesArb, fc.option(mediaTypeArb, { nil: undefined }), (bytes, type) => {
        parseAndRecord(bytes, type)
      }),
      { numRuns: 5000 },
    )
  })

  test('huge layer lists are recorded or refused with a 413 MANIFEST_INVALID', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20_000 }), digestArb, (count, digest) => {
        const refused = parseAndRecord(manifestWithLayers(count, digest), undefined)
        if (refused) assert.equal(refused.status, 413, refused.message)
      }),
      { numRuns: 20 },
    )
  })

  test('nesting deeper than any parser stack is MANIFEST_INVALID', () => {
    for (const depth of [10_000, 1_000_000]) {
      const bytes = Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`)
      assert.equal(parseAndRecord(bytes, undefined)?.code, 'MANIFEST_INVALID')
    }
  })
})

describe('Content-Range of an upload chunk', () => {
  const rangeChars = fc.constantFrom(...'0123456789-/ *=bytes,\t'.split(''))
  const rangeArb = fc.oneof(
    fc.string({ unit: rangeChars, maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc
      .tuple(fc.bigInt({ min: 0n, max: 10n ** 20n }), fc.bigInt({ min: 0n, max: 10n ** 20n }))
      .map(([a, b]) => `${a}-${b}`),
  )

  test('any value is an ordered safe range or RANGE_INVALID with 416', () => {
    fc.assert(
      fc.property(rangeArb, (value) => {
        let range: ReturnType<typeof parseContentRange>
        try {
          range = parseContentRange(value)
        } catch (error) {
          assert.equal(expectOci(error, 'RANGE_INVALID').status, 416)
          return
        }
        assert.ok(range)
        assert.ok(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end))
        assert.ok(range.start >= 0 && range.start <= range.end)
      }),
      { numRuns: 10_000 },
    )
  })

  test('ranges it writes itself read back', () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(), (start, length) => {
        assert.deepEqual(parseContentRange(`${start}-${start + length}`), {
          start,
          end: start + length,
        })
      }),
    )
  })
})
