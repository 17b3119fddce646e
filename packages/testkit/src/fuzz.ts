// fast-check helpers for fuzz tests: JSON values that break validators (wrong types, edge
// numbers, empty and odd strings, `__proto__` keys) and valid documents with a few fields
// replaced, removed or added. fast-check prints the seed and the shrunk input on a failure.
import assert from 'node:assert/strict'
import { ConfigError, formatIssue } from '@atcr/core/config'
import fc from 'fast-check'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/** Values that a field of a valid document should not hold, and some it may. */
export const weirdJsonValue: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>,
  fc.constantFrom<Json>(
    -1,
    0,
    1.5,
    2 ** 31,
    2 ** 53,
    -(2 ** 53),
    1e308,
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    'x'.repeat(3000),
    '../../etc/passwd',
    'did:plc:',
    'at://',
    'sha256:',
    `sha256:${'A'.repeat(64)}`,
    `sha512:${'a'.repeat(64)}`,
    [],
    {},
    JSON.parse('{"__proto__":{"a":1}}') as Json,
    null,
    true,
  ),
)

/** Every object and array inside a JSON value (the value itself first). */
function holders(value: Json, out: Array<{ [key: string]: Json } | Json[]> = []) {
  if (value !== null && typeof value === 'object') {
    out.push(value)
    for (const child of Object.values(value)) holders(child, out)
  }
  return out
}

/**
 * `base` with one to `maxMutations` changes, each in a random object or array of it: a
 * field or item replaced by `values`, removed, or added (named from `names` when added).
 */
export function mutatedJson(
  base: fc.Arbitrary<Json>,
  options: { names?: readonly string[]; values?: fc.Arbitrary<Json>; maxMutations?: number } = {},
): fc.Arbitrary<Json> {
  const names = options.names ?? ['x']
  const mutation = fc.tuple(
    fc.nat(),
    fc.nat(),
    fc.constantFrom('replace', 'delete', 'add'),
    options.values ?? weirdJsonValue,
  )
  return fc
    .tuple(base, fc.array(mutation, { minLength: 1, maxLength: options.maxMutations ?? 3 }))
    .map(([document, mutations]) => {
      const copy = structuredClone(document)
      for (const [which, key, how, shared] of mutations) {
        // constantFrom hands out the same [] and {} each time: a copy, so nothing holds itself.
        const value = structuredClone(shared)
        const all = holders(copy)
        if (all.length === 0) return value
        const holder = all[which % all.length]!
        if (Array.isArray(holder)) {
          const i = holder.length === 0 ? 0 : key % holder.length
          if (how === 'delete') holder.splice(i, 1)
          else if (how === 'add') holder.push(value)
          else holder[i] = value
        } else {
          const keys = Object.keys(holder)
          const name =
            how === 'add' || keys.length === 0
              ? names[key % names.length]!
              : keys[key % keys.length]!
          if (how === 'delete') delete holder[name]
          else
            Object.defineProperty(holder, name, {
              value,
              enumerable: true,
              writable: true,
              configurable: true,
            })
        }
      }
      return copy
    })
}

/** Every mapping key of a JSON value, for mutations to add keys a config or record knows. */
export function keysOf(value: Json, out = new Set<string>()): string[] {
  if (Array.isArray(value)) for (const item of value) keysOf(item, out)
  else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.add(key)
      keysOf(item, out)
    }
  }
  return [...out]
}

const yamlChars = fc.constantFrom(...'ab:_ -\n\t#&*!|>[]{},\'"%@`0.9'.split(''))

/**
 * Config file text: the example config (YAML) with values replaced, removed or added at any
 * level, YAML-ish noise, and arbitrary text.
 */
export function configYamlArb(exampleYaml: string): fc.Arbitrary<string> {
  const example = (parseYaml(exampleYaml) ?? {}) as Json
  return fc.oneof(
    {
      arbitrary: mutatedJson(fc.constant(example), { names: keysOf(example) }).map((value) =>
        stringifyYaml(value),
      ),
      weight: 6,
    },
    { arbitrary: fc.string({ unit: yamlChars, maxLength: 120 }), weight: 2 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 80 }), weight: 1 },
  )
}

/**
 * Runs a config load: it succeeds, or throws a ConfigError whose every issue is one bounded
 * line naming its key (or, for the file as a whole, the file). Returns the error, if any.
 */
export function expectConfigOutcome(run: () => unknown): ConfigError | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${(error as Error)?.stack}`)
    assert.ok(error.issues.length > 0)
    for (const issue of error.issues) {
      const line = formatIssue(issue)
      assert.doesNotMatch(line, /[\n\r]/, `one line: ${JSON.stringify(line)}`)
      assert.ok(line.length < 600, `bounded: ${line.slice(0, 100)}`)
      assert.ok(issue.path !== '' || issue.file !== undefined, `names its key: ${line}`)
    }
    return error
  }
}

/**
 * A file's bytes (a CAR, say) with one change, the shapes of damage a download or a disk can
 * do: truncated, a byte flipped, a span overwritten, bytes inserted or cut out, a header byte
 * set, or arbitrary bytes instead.
 */
export function damagedBytesArb(car: Uint8Array): fc.Arbitrary<Uint8Array> {
  const at = fc.nat({ max: car.length - 1 })
  const bytes = fc.uint8Array({ minLength: 1, maxLength: 16 })
  return fc.oneof(
    at.map((n) => car.subarray(0, n)),
    fc.tuple(at, fc.integer({ min: 1, max: 255 })).map(([n, x]) => {
      const copy = Uint8Array.from(car)
      copy[n] = copy[n]! ^ x
      return copy
    }),
    fc.tuple(at, bytes).map(([n, b]) => {
      const copy = Uint8Array.from(car)
      copy.set(b.subarray(0, car.length - n), n)
      return copy
    }),
    fc.tuple(at, bytes).map(([n, b]) => Buffer.concat([car.subarray(0, n), b, car.subarray(n)])),
    fc
      .tuple(at, fc.integer({ min: 1, max: 64 }))
      .map(([n, k]) => Buffer.concat([car.subarray(0, n), car.subarray(n + k)])),
    // The header's length and the first block's, the likeliest to be trusted blindly.
    fc.tuple(fc.nat({ max: 8 }), fc.integer({ min: 0, max: 255 })).map(([n, v]) => {
      const copy = Uint8Array.from(car)
      copy[n] = v
      return copy
    }),
    fc.uint8Array({ maxLength: 300 }),
  )
}

/** A few of an app's config variables (`fields` from its ConfigDefinition) set to any value. */
export function configEnvArb(
  fields: readonly { envVar: string }[],
): fc.Arbitrary<Record<string, string>> {
  const value = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom('', ' ', 'true', 'no', '-1', '1e999', '0x10', '5m', 'null', '[]', 'a,b'),
    fc.constant('9'.repeat(400)),
  )
  return fc
    .uniqueArray(fc.tuple(fc.constantFrom(...fields.map((f) => f.envVar)), value), {
      maxLength: 4,
      selector: ([name]) => name,
    })
    .map((settings) => Object.fromEntries(settings))
}

/** Asserts that every issue naming a variable names one of `env`'s. */
export function expectEnvIssuesFrom(
  error: ConfigError | undefined,
  env: Record<string, string>,
): void {
  for (const issue of error?.issues ?? []) {
    if (issue.envVar !== undefined) assert.ok(issue.envVar in env, issue.envVar)
  }
}
