// Property-based fuzzing (fast-check) of the OCI parsers every request goes through:
// digests, repository names, tags, manifest references, token scopes and WWW-Authenticate
// challenges. Any string either parses to something that round-trips or is refused with the
// registry's own error (DIGEST_INVALID, NAME_INVALID, TAG_INVALID, InvalidScopeError), never
// another exception; and a scope intersection never grants more than was asked and allowed.
// The seed is random per run; fast-check prints it (and the shrunk input) when a property fails.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  assertRepositoryName,
  assertTag,
  digestOf,
  explainRepositoryName,
  formatScope,
  formatScopes,
  fromAccessEntries,
  InvalidDigestError,
  InvalidScopeError,
  intersectScopes,
  isDigest,
  isRepositoryName,
  isTag,
  OciError,
  parseAuthChallenges,
  parseBearerChallenge,
  parseDigest,
  parseManifestReference,
  parseScope,
  parseScopes,
  REPOSITORY_NAME_MAX_LENGTH,
  scopeAllows,
  type TokenScope,
  toAccessEntries,
} from '@atcr/core/oci'
import fc from 'fast-check'

const RUNS = 10_000

/** Strings biased toward the characters the grammars care about, plus anything at all. */
const grammarChars = fc.constantFrom(
  ...'abcz09AZ:._-_/ ,()*=+"\\\t\n\u0000\u00e9\u{1f600}sha256512'.split(''),
)
const nearGrammarString = fc.oneof(
  fc.string({ unit: grammarChars, maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
)

const hex = (length: number) =>
  fc.string({
    unit: fc.constantFrom(...'0123456789abcdef'.split('')),
    minLength: length,
    maxLength: length,
  })
const validDigest = fc.oneof(
  hex(64).map((h) => `sha256:${h}`),
  hex(128).map((h) => `sha512:${h}`),
)

const alnum = fc.string({
  unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'.split('')),
  minLength: 1,
  maxLength: 8,
})
const separator = fc.constantFrom('.', '_', '__', '-', '--', '---')
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 3 }))
  .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(''))
const validName = fc
  .array(component, { minLength: 1, maxLength: 5 })
  .map((parts) => parts.join('/'))
  .filter((name) => name.length <= REPOSITORY_NAME_MAX_LENGTH)

/** Asserts `run()` either returns or throws an error `accept` recognises; returns which. */
function outcome<T>(run: () => T, accept: (error: unknown) => boolean): T | Error {
  try {
    return run()
  } catch (error) {
    assert.ok(accept(error), `unexpected ${(error as Error)?.stack ?? String(error)}`)
    return error as Error
  }
}

function ociCode(...codes: string[]) {
  return (error: unknown) => error instanceof OciError && codes.includes(error.code)
}

describe('digests', () => {
  test('any string parses to itself or is refused with DIGEST_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(nearGrammarString, validDigest), (input) => {
        const result = outcome(
          () => parseDigest(input),
          (e) => e instanceof InvalidDigestError && e.code === 'DIGEST_INVALID',
        )
        if (result instanceof Error) {
          assert.equal(isDigest(input), false)
          assert.ok(result.message.length < 400, 'the echoed input is bounded')
        } else {
          assert.equal(result.digest, input)
          assert.equal(`${result.algorithm}:${result.hex}`, input)
          assert.equal(isDigest(input), true)
        }
      }),
      { numRuns: RUNS },
    )
  })

  test('the digest of any content parses and round-trips', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 256 }),
        fc.constantFrom('sha256', 'sha512'),
        (bytes, algorithm) => {
          const digest = digestOf(bytes, algorithm as 'sha256' | 'sha512')
          assert.equal(parseDigest(digest).digest, digest)
        },
      ),
      { numRuns: 500 },
    )
  })

  test('a valid digest with one character changed, added or removed is refused unless it is still lowercase hex of the right length', () => {
    fc.assert(
      fc.property(
        validDigest,
        fc.nat(),
        fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }),
        fc.constantFrom('replace', 'insert', 'delete'),
        (digest, at, c, how) => {
          const i = at % digest.length
          const mutated =
            how === 'replace'
              ? digest.slice(0, i) + c + digest.slice(i + 1)
              : how === 'insert'
                ? digest.slice(0, i) + c + digest.slice(i)
                : digest.slice(0, i) + digest.slice(i + 1)
          const stillValid = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(mutated)
          assert.equal(isDigest(mutated), stillValid)
        },
      ),
      { numRuns: RUNS },
    )
  })
})

describe('repository names and tags', () => {
  test('names built from the grammar are accepted', () => {
    fc.assert(
      fc.property(validName, (name) => {
        assert.equal(assertRepositoryName(name), name)
      }),
      { numRuns: RUNS },
    )
  })

  test('any string is a name exactly when the distribution grammar says so, else NAME_INVALID with a reason', () => {
    const grammar =
      /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
    fc.assert(
      fc.property(fc.oneof(nearGrammarString, validName), (input) => {
        const valid = grammar.test(input) && input.length <= REPOSITORY_NAME_MAX_LENGTH
        assert.equal(isRepositoryName(input), valid)
        const result = outcome(() => assertRepositoryName(input), ociCode('NAME_INVALID'))
        if (valid) assert.equal(result, input)
        else {
          assert.ok(result instanceof OciError)
          assert.ok(explainRepositoryName(input), 'a reason is given')
          assert.ok(result.message.length < 500)
        }
      }),
      { numRuns: RUNS },
    )
  })

  test('overlong names are refused by length, whatever they contain', () => {
    fc.assert(
      fc.property(validName, fc.integer({ min: 1, max: 300 }), (name, extra) => {
        const long = `${name}/${'a'.repeat(REPOSITORY_NAME_MAX_LENGTH + extra - name.length)}`
        assert.throws(() => assertRepositoryName(long), /characters long/)
      }),
      { numRuns: 200 },
    )
  })

  test('any string is a tag exactly when the grammar says so, else TAG_INVALID', () => {
    fc.assert(
      fc.property(nearGrammarString, (input) => {
        const valid = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/.test(input)
        assert.equal(isTag(input), valid)
        const result = outcome(() => assertTag(input), ociCode('TAG_INVALID'))
        assert.equal(result instanceof Error, !valid)
      }),
      { numRuns: RUNS },
    )
  })

  test('a manifest reference is a digest or a tag, else DIGEST_INVALID or TAG_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(nearGrammarString, validDigest), (input) => {
        const result = outcome(
          () => parseManifestReference(input),
          ociCode('DIGEST_INVALID', 'TAG_INVALID'),
        )
        if (result instanceof Error) return
        if (result.kind === 'digest') assert.equal(result.digest, input)
        else assert.equal(result.tag, input)
      }),
      { numRuns: RUNS },
    )
  })
})

const action = fc.constantFrom('pull', 'push', 'delete', '*', 'metadata-read')
const scopeArb: fc.Arbitrary<TokenScope> = fc
  .record({
    type: fc.constantFrom('repository', 'registry'),
    name: fc.oneof(validName, fc.constantFrom('did:plc:abc/app', 'localhost:5000/x', 'catalog')),
    actions: fc.uniqueArray(action, { maxLength: 4 }),
  })
  .map(({ type, name, actions }) => ({ type, name, actions: new Set(actions) }))

function sameScope(a: TokenScope, b: TokenScope): void {
  assert.equal(a.type, b.type)
  assert.equal(a.name, b.name)
  assert.equal(a.class, b.class)
  assert.deepEqual([...a.actions].sort(), [...b.actions].sort())
}

describe('token scopes', () => {
  test('any scope string parses to a scope that formats back to an equal one, or is refused', () => {
    fc.assert(
      fc.property(nearGrammarString, (input) => {
        const result = outcome(
          () => parseScopes(input),
          (e) => e instanceof InvalidScopeError,
        )
        if (result instanceof Error) return
        for (const scope of result) sameScope(parseScope(formatScope(scope)), scope)
        assert.deepEqual(
          parseScopes(formatScopes(result)).map(formatScope),
          result.map(formatScope),
        )
      }),
      { numRuns: RUNS },
    )
  })

  test('well-formed scopes round-trip through the string and the token access claim', () => {
    fc.assert(
      fc.property(fc.array(scopeArb, { maxLength: 5 }), (scopes) => {
        const back = parseScopes(formatScopes(scopes))
        // Scopes with no actions still round-trip through the string form.
        assert.equal(back.length, scopes.length)
        for (const [i, scope] of back.entries()) sameScope(scope, scopes[i]!)
        for (const [i, scope] of fromAccessEntries(toAccessEntries(scopes)).entries()) {
          sameScope(scope, scopes[i]!)
        }
      }),
      { numRuns: RUNS },
    )
  })

  test('an intersection never grants an action that was not both asked for and allowed', () => {
    fc.assert(
      fc.property(
        fc.array(scopeArb, { maxLength: 6 }),
        fc.array(scopeArb, { maxLength: 6 }),
        (granted, requested) => {
          for (const scope of intersectScopes(granted, requested)) {
            assert.ok(scope.actions.size > 0)
            for (const a of scope.actions) {
              assert.ok(scopeAllows(granted, scope, a), `${a} on ${scope.name} was not granted`)
              assert.ok(
                requested.some(
                  (r) =>
                    r.type === scope.type &&
                    r.name === scope.name &&
                    (r.actions.has(a) || r.actions.has('*')),
                ),
                `${a} on ${scope.name} was not asked for`,
              )
            }
          }
        },
      ),
      { numRuns: RUNS },
    )
  })

  test('an arbitrary access claim is read back or refused with InvalidScopeError', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (claim) => {
        outcome(
          () => fromAccessEntries(claim),
          (e) => e instanceof InvalidScopeError,
        )
      }),
      { numRuns: RUNS },
    )
  })
})

describe('WWW-Authenticate challenges', () => {
  const challengeChars = fc.constantFrom(
    ...'Bearer Basic realm=service scope="\\,\t =abc:/_-'.split(''),
  )
  test('any header value parses without throwing, and a Bearer challenge keeps its realm', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: challengeChars, maxLength: 120 }),
          fc.string({ unit: 'binary', maxLength: 120 }),
        ),
        (header) => {
          const challenges = parseAuthChallenges(header)
          for (const c of challenges) assert.ok(c.scheme.length > 0)
          const bearer = parseBearerChallenge(header)
          if (bearer) assert.equal(typeof bearer.realm, 'string')
        },
      ),
      { numRuns: RUNS },
    )
  })
})
