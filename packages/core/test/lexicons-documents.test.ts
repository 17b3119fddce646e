import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { lexiconDocuments, NSID } from '@atcr/core/lexicons'
import { parseLexiconDoc } from '@atproto/lexicon'
import { renderLexiconArtifacts } from '../../../scripts/gen-lexicons.ts'

const projectRoot = fileURLToPath(new URL('../../..', import.meta.url))
const oursDir = join(projectRoot, 'lexicons')
// A byte-for-byte copy of the published io.atcr lexicons (see its README). Records written by the
// original ATCR and by us must stay readable by both, so ours may differ only in wording.
const referenceDir = fileURLToPath(new URL('./lexicons-reference', import.meta.url))

// Ours, not published by the original (it serves the method without a lexicon).
const OWN_ONLY = new Set(['io.atcr.hold.listTiers'])

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

function jsonFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, e.name)
      if (e.isDirectory()) walk(full)
      else if (e.name.endsWith('.json')) {
        out.set(
          relative(dir, full)
            .replace(/\.json$/, '')
            .split(/[\\/]/)
            .join('.'),
          full,
        )
      }
    }
  }
  walk(dir)
  return out
}

const readJson = (file: string): JsonObject => JSON.parse(readFileSync(file, 'utf8')) as JsonObject

// Description texts are prose (ours are in our own words); a permission set's `detail` likewise.
const isProse = (key: string, node: JsonObject): boolean =>
  typeof node[key] === 'string' &&
  (key === 'description' || (key === 'detail' && node.type === 'permission-set'))

function withoutProse(node: Json): Json {
  if (Array.isArray(node)) return node.map(withoutProse)
  if (node === null || typeof node !== 'object') return node
  const out: JsonObject = {}
  for (const [key, value] of Object.entries(node)) {
    if (!isProse(key, node)) out[key] = withoutProse(value)
  }
  return out
}

function proseByPath(node: Json, path = ''): Map<string, string> {
  const out = new Map<string, string>()
  if (node === null || typeof node !== 'object') return out
  for (const [key, value] of Object.entries(node)) {
    const p = `${path}/${key}`
    if (!Array.isArray(node) && isProse(key, node)) out.set(p, value as string)
    else for (const [k, v] of proseByPath(value, p)) out.set(k, v)
  }
  return out
}

const ours = jsonFiles(oursDir)
const reference = jsonFiles(referenceDir)

describe('lexicon documents', () => {
  test('we define every published io.atcr lexicon, plus listTiers', () => {
    assert.ok(reference.size >= 26, 'reference copy is missing')
    assert.deepEqual([...ours.keys()].sort(), [...reference.keys(), ...OWN_ONLY].sort())
  })

  for (const [id, refFile] of reference) {
    test(`${id} matches the published schema except in wording`, () => {
      const file = ours.get(id)
      assert.ok(file, `lexicons/${id.replaceAll('.', '/')}.json is missing`)
      const doc = readJson(file)
      const { $type, ...published } = readJson(refFile).schema as JsonObject
      assert.equal($type, 'com.atproto.lexicon.schema')

      const mine = structuredClone(doc)
      if (id === NSID.manifest) {
        // SPEC.md section 0: manifests are keyed by digest hex, so our key type is `any`.
        const main = (mine.defs as JsonObject).main as JsonObject
        assert.equal(main.key, 'any')
        main.key = 'tid'
      }
      if (id === NSID.holdInitiateUpload) {
        // docs/hold.md: a streamed upload's digest is known only at completeUpload, so ours
        // makes `digest` optional (its description says why); the published one requires it.
        const schema = ((mine.defs as JsonObject).main as JsonObject).input as JsonObject
        const input = schema.schema as JsonObject
        assert.equal(input.required, undefined)
        input.required = ['digest']
      }
      assert.deepEqual(withoutProse(mine), withoutProse(published))
    })

    test(`${id} describes the same things in its own words`, () => {
      const mine = proseByPath(readJson(ours.get(id) ?? ''))
      const theirs = proseByPath(readJson(refFile).schema as JsonObject)
      for (const [path, text] of theirs) {
        const own = mine.get(path)
        assert.ok(own, `${id}${path}: no description`)
        assert.notEqual(own, text, `${id}${path}: copied from the published schema`)
      }
    })
  }

  test('every document is a valid lexicon whose id matches its path', () => {
    for (const [id, file] of ours) {
      const doc = parseLexiconDoc(readJson(file))
      assert.equal(doc.id, id)
    }
  })

  test('NSID lists every document, and nothing else', () => {
    assert.deepEqual(Object.values(NSID).sort(), [...ours.keys()].sort())
    assert.equal(NSID.manifest, 'io.atcr.manifest')
    assert.equal(NSID.repoPage, 'io.atcr.repo.page')
    assert.equal(NSID.sailorStar, 'io.atcr.sailor.star')
    assert.equal(NSID.holdInitiateUpload, 'io.atcr.hold.initiateUpload')
    assert.equal(NSID.holdListTiers, 'io.atcr.hold.listTiers')
    assert.ok(Object.isFrozen(NSID))
  })

  test('generated types and the bundled documents are up to date (run scripts/gen-lexicons.ts)', () => {
    for (const file of renderLexiconArtifacts(projectRoot)) {
      const current = readFileSync(file.path, 'utf8')
      assert.ok(current === file.content, `${relative(projectRoot, file.path)} is stale`)
    }
  })

  test('the exported documents are the files under lexicons/, frozen', () => {
    assert.deepEqual(
      lexiconDocuments.map((d) => d.id),
      [...ours.keys()].sort(),
    )
    for (const doc of lexiconDocuments) {
      assert.deepEqual(doc, readJson(ours.get(doc.id) ?? ''))
    }
    assert.ok(Object.isFrozen(lexiconDocuments[0]?.defs))
  })

  test('listTiers is a public query returning ranked tiers', () => {
    const doc = readJson(ours.get(NSID.holdListTiers) ?? '')
    const defs = doc.defs as JsonObject
    const main = defs.main as JsonObject
    assert.equal(main.type, 'query')
    assert.equal(main.parameters, undefined)
    const tier = defs.tierInfo as JsonObject
    assert.deepEqual(tier.required, ['name', 'rank', 'default'])
  })
})
