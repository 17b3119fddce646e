// Property-based fuzzing (fast-check) of the hold's config file: the example config with
// values replaced, removed or added at any level, YAML noise and arbitrary bytes. Loading
// gives the config or a ConfigError whose every issue is one line naming its key (or, for the
// file as a whole, the file); the real `atcr-hold serve` then exits 2 with that message, no
// stack trace, and the data dir never created. Any value in its environment variables
// likewise loads or is refused naming the variable. The seed is random per run; fast-check
// prints it.
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { access, readFile, writeFile } from 'node:fs/promises'
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
import { checkServeConfig, holdConfig } from '../src/config.ts'
import { runHoldCli } from './hold-harness.ts'

const EXAMPLE = new URL('../../../config-hold.example.yaml', import.meta.url).pathname

/** Loads the file as `serve` does before it touches anything; returns the ConfigError, if any. */
const load = (file: string) =>
  expectConfigOutcome(() => checkServeConfig(holdConfig.load({ file, env: {} })))

describe('hold config files, fuzzed', () => {
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
        if (load(file)) refused++
      }),
      { numRuns: 2000 },
    )
    assert.ok(refused > 0)
  })

  it('any value in any ATCR_HOLD_* variable loads or is refused naming the variable', () => {
    fc.assert(
      fc.property(configEnvArb(holdConfig.fields()), (env) => {
        expectEnvIssuesFrom(
          expectConfigOutcome(() => holdConfig.load({ env })),
          env,
        )
      }),
      { numRuns: 2000 },
    )
  })

  it('YAML that only fails when built (an alias with no anchor, an alias bomb) is refused', async () => {
    const file = join(dir, 'aliases.yaml')
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]']
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i)
      const name = String.fromCharCode(97 + i)
      bomb.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(', ')}]`)
    }
    for (const yaml of ['server: *nowhere\n', `${bomb.join('\n')}\n`]) {
      await writeFile(file, yaml)
      assert.match(load(file)?.message ?? '', /invalid YAML/)
    }
  })

  it('atcr-hold serve with a refused config: exit 2, the message, no stack, no data dir', async () => {
    const file = join(dir, 'serve.yaml')
    const dataDir = join(dir, 'data')
    const invalid = configYamlArb(example).filter((yaml) => {
      const probe = join(dir, 'probe.yaml')
      writeFileSync(probe, yaml)
      return load(probe) !== undefined
    })
    await fc.assert(
      fc.asyncProperty(invalid, async (yaml) => {
        await writeFile(file, yaml)
        const { code, stderr } = await runHoldCli(['serve', '--config', file], {
          ATCR_HOLD_SERVER_DATA_DIR: dataDir,
        })
        assert.equal(code, 2, stderr)
        assert.match(stderr, /^atcr-hold: invalid configuration:\n/)
        assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace')
        await assert.rejects(access(dataDir), { code: 'ENOENT' })
      }),
      { numRuns: 6 },
    )
  })
})
