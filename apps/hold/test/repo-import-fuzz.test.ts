// Property-based fuzzing (fast-check) of `atcr-hold repo import` with damaged CAR files: the
// hold's own export truncated, with bytes flipped, overwritten, inserted or cut out, or
// arbitrary bytes. The real CLI exits 1 naming the file, with no stack trace, and the repo
// keeps its head and every record; or, when the damage left the repo intact, imports it as a
// no-op. Each run is a process, so the runs are few; the core car-fuzz test runs thousands of
// damaged CARs through the same reader. The seed is random per run; fast-check prints it.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { damagedBytesArb, freePort } from '@atcr/testkit'
import fc from 'fast-check'
import { HoldFixture, holdCliEnv, recordsOf, runHoldCli } from './hold-harness.ts'

const OWNER = 'did:plc:ownerownerownerownerowne'

describe('atcr-hold repo import, fuzzed', () => {
  let fixture: HoldFixture
  let env: Record<string, string>
  let dataDir: string
  let did: string
  let car: Buffer
  before(async () => {
    fixture = await HoldFixture.start({ ownerDid: OWNER })
    const port = await freePort()
    dataDir = await fixture.tempDir()
    const running = await fixture.startHold({ dataDir, port })
    did = running.hold.did
    await running.stop()
    env = holdCliEnv({ dataDir, url: `http://localhost:${port}`, ownerDid: OWNER })
    const exported = await runHoldCli(['repo', 'export'], env)
    assert.equal(exported.code, 0, exported.stderr)
    car = exported.stdout
  })
  after(() => fixture?.close())

  it('a damaged CAR fails naming the file, without a stack, and the repo is unchanged', async () => {
    const before = await recordsOf(dataDir, did)
    const file = join(dataDir, 'damaged.car')
    await fc.assert(
      fc.asyncProperty(damagedBytesArb(car), async (damaged) => {
        await writeFile(file, damaged)
        const result = await runHoldCli(['repo', 'import', file], env)
        assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace')
        if (result.code === 0) {
          assert.equal(Buffer.compare(Buffer.from(damaged), car), 0, 'only the intact CAR imports')
          assert.deepEqual((await recordsOf(dataDir, did)).records, before.records)
          return
        }
        assert.equal(result.code, 1, result.stderr)
        assert.ok(result.stderr.includes(file), result.stderr)
        assert.deepEqual(await recordsOf(dataDir, did), before, 'the repo is unchanged')
      }),
      { numRuns: 10 },
    )
  })
})
