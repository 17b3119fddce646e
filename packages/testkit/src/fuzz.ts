// fast-check helpers for fuzz tests: JSON values that break validators (wrong types, edge
// numbers, empty and odd strings, `__proto__` keys) and valid documents with a few fields
// replaced, removed or added. fast-check prints the seed and the shrunk input on a failure.
import fc from 'fast-check'

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
