// docs/configuration.md is generated from the config schemas: an option added, removed or
// re-described without re-running scripts/gen-config-docs.ts fails here.
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import { appviewConfig } from '../apps/appview/src/config.ts'
import { holdConfig } from '../apps/hold/src/config.ts'
import { CONFIG_DOC, renderConfigReference } from './gen-config-docs.ts'

describe('docs/configuration.md', () => {
  it('is what the config schemas render (run node scripts/gen-config-docs.ts)', async () => {
    assert.equal(await readFile(CONFIG_DOC, 'utf8'), renderConfigReference())
  })

  it('names every option with its environment variable', async () => {
    const doc = await readFile(CONFIG_DOC, 'utf8')
    for (const definition of [holdConfig, appviewConfig]) {
      for (const field of definition.fields()) {
        assert.ok(doc.includes(`| \`${field.path.join('.')}\` |`), field.path.join('.'))
        assert.ok(doc.includes(`\`${field.envVar}\``), field.envVar)
      }
    }
  })
})
