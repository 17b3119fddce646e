// Property-based fuzzing (fast-check) of image names, `<handle-or-DID>/<repository>`: a DID
// written the way OCI clients accept it (`did-plc-…`) reads back as the same DID, a handle
// reads back lowercased, and any other string is refused with NAME_INVALID and a message of
// bounded length. The seed is random per run; fast-check prints it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isRepositoryName, OciError } from '@atcr/core/oci'
import fc from 'fast-check'
import { clientSafeDid, parseImageName } from '../src/names.ts'

const lower = (chars: string, min: number, max: number) =>
  fc.string({ unit: fc.constantFrom(...chars.split('')), minLength: min, maxLength: max })
const plcDid = lower('abcdefghijklmnopqrstuvwxyz234567', 24, 24).map((id) => `did:plc:${id}`)
const webDid = lower('abcdefghijklmnopqrstuvwxyz0123456789', 1, 12).map(
  (host) => `did:web:${host}.example`,
)
const label = lower('abcdefghijklmnopqrstuvwxyz0123456789', 1, 10)
const handle = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom('test', 'social', 'com'))
  .map(([labels, tld]) => `${labels.join('.')}.${tld}`)
const repository = fc
  .array(lower('abcdefghijklmnopqrstuvwxyz0123456789', 1, 8), { minLength: 1, maxLength: 3 })
  .map((parts) => parts.join('/'))

describe('image names, fuzzed', () => {
  it('a DID in its client-safe spelling, or raw, reads back as the same DID and repository', () => {
    fc.assert(
      fc.property(fc.oneof(plcDid, webDid), repository, fc.boolean(), (did, repo, safe) => {
        const parsed = parseImageName(`${safe ? clientSafeDid(did) : did}/${repo}`)
        assert.deepEqual(parsed.identity, { kind: 'did', did })
        assert.equal(parsed.repository, repo)
      }),
      { numRuns: 5000 },
    )
  })

  it('a handle in any case reads back lowercased', () => {
    fc.assert(
      fc.property(handle, repository, fc.boolean(), (h, repo, upper) => {
        const parsed = parseImageName(`${upper ? h.toUpperCase() : h}/${repo}`)
        assert.deepEqual(parsed.identity, { kind: 'handle', handle: h })
      }),
      { numRuns: 5000 },
    )
  })

  it('any string is a name whose repository is valid, or NAME_INVALID with a bounded message', () => {
    const chars = fc.constantFrom(...'abz09-_.:/%A \n'.split(''))
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: chars, maxLength: 60 }),
          fc.string({ maxLength: 60 }),
          fc.string({ unit: chars, minLength: 300, maxLength: 2000 }),
          // A first component longer than any handle or DID.
          fc
            .string({
              unit: fc.constantFrom(...'a.:-%'.split('')),
              minLength: 300,
              maxLength: 2000,
            })
            .map((c) => `${c}/app`),
        ),
        (name) => {
          try {
            const parsed = parseImageName(name)
            assert.ok(isRepositoryName(parsed.repository))
          } catch (error) {
            assert.ok(error instanceof OciError && error.code === 'NAME_INVALID', String(error))
            assert.ok(error.message.length < 400, `message of ${error.message.length} characters`)
          }
        },
      ),
      { numRuns: 10_000 },
    )
  })
})
