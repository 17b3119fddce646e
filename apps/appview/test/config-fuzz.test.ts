// Property-based fuzzing (fast-check) of the AppView's config file: the example config with
// values replaced, removed or added at any level, YAML noise and arbitrary bytes. Loading
// gives the config or a ConfigError whose every issue is one line naming its key (or, for the
// file as a whole, the file), never another exception; likewise any value in the AppView's
// environment variables, refused naming the variable. The hold's config-fuzz test also runs
// the real executable. The seed is random per run; fast-check prints it.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  configEnvArb,
  configYamlArb,
  expectConfigOutcome,
  expectEnvIssuesFrom,
  makeTempDir,
  removeTempDir,
} from '@atcr/testkit'
import fc from 'fast-check'
import { appviewConfig } from '../src/config.ts'

const EXAMPLE = new URL('../../../config-appview.example.yaml', import.meta.url).pathname

describe('AppView config files, fuzzed', () => {
  let dir: string
  let example: string
  before(async () => {
    dir = await makeTempDir('atcr-config-fuzz-')
    example = await readFile(EXAMPLE, 'utf8')
  })
  after(() => removeTempDir(dir))

  it('any config file loads or is refused with one line per issue naming its key', async () => {
    const file = join(dir, 'config.yaml')
    let refused = 0
    await fc.assert(
      fc.asyncProperty(configYamlArb(example), async (yaml) => {
        await writeFile(file, yaml)
        if (expectConfigOutcome(() => appviewConfig.load({ file, env: {} }))) refused++
      }),
      { numRuns: 2000 },
    )
    assert.ok(refused > 0)
  })

  it('any value in any ATCR_APPVIEW_* variable loads or is refused naming the variable', () => {
    fc.assert(
      fc.property(configEnvArb(appviewConfig.fields()), (env) => {
        expectEnvIssuesFrom(
          expectConfigOutcome(() => appviewConfig.load({ env })),
          env,
        )
      }),
      { numRuns: 2000 },
    )
  })
})
