// Property-based fuzzing (fast-check) of the hold's Range header reading (getBlob): any
// header against any blob size is the whole blob, unsatisfiable (416) or one byte range
// inside the blob, and a well-formed single range means what RFC 9110 says. Blob GETs with
// arbitrary Range over HTTP are in the AppView's registry-fuzz test. The seed is random per
// run; fast-check prints it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parseRange } from '../src/blobs/download.ts'

const sizeArb = fc.oneof(fc.nat({ max: 2000 }), fc.constant(0), fc.maxSafeNat())

describe('Range headers, fuzzed', () => {
  it('any header: the whole blob, unsatisfiable, or a range inside the blob', () => {
    const header = fc.oneof(
      fc.string({
        unit: fc.constantFrom(...'bytes=0123456789-, BYTES\t'.split('')),
        maxLength: 40,
      }),
      fc.string({ maxLength: 40 }),
      fc
        .tuple(fc.bigInt({ min: 0n, max: 10n ** 22n }), fc.bigInt({ min: 0n, max: 10n ** 22n }))
        .map(([a, b]) => `bytes=${a}-${b}`),
    )
    fc.assert(
      fc.property(fc.option(header, { nil: undefined }), sizeArb, (value, size) => {
        const range = parseRange(value, size)
        if (range.kind !== 'partial') return
        assert.ok(Number.isSafeInteger(range.first) && Number.isSafeInteger(range.last))
        assert.ok(
          0 <= range.first && range.first <= range.last && range.last < size,
          JSON.stringify({ value, size, range }),
        )
      }),
      { numRuns: 20_000 },
    )
  })

  it('a well-formed single range means what RFC 9110 says', () => {
    fc.assert(
      fc.property(fc.nat({ max: 5000 }), fc.nat({ max: 5000 }), sizeArb, (first, last, size) => {
        const range = parseRange(`bytes=${first}-${last}`, size)
        if (last < first || first >= size) assert.equal(range.kind, 'unsatisfiable')
        else assert.deepEqual(range, { kind: 'partial', first, last: Math.min(last, size - 1) })
        const suffix = parseRange(`bytes=-${last}`, size)
        if (last === 0 || size === 0) assert.equal(suffix.kind, 'unsatisfiable')
        else
          assert.deepEqual(suffix, {
            kind: 'partial',
            first: Math.max(0, size - last),
            last: size - 1,
          })
      }),
      { numRuns: 20_000 },
    )
  })
})
