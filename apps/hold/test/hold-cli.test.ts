import assert from 'node:assert/strict'
import { copyFile, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import { freePort } from '@atcr/testkit'
import { TID } from '@atproto/common'
import { readCarWithRoot, verifyRepo } from '@atproto/repo'
import { holdConfig } from '../src/config.ts'
import { openDatabase } from '../src/db/index.ts'
import { putCrewRecord } from './hold-data.ts'
import { HoldFixture, holdCliEnv, recordsOf, runHoldCli as run } from './hold-harness.ts'

const EXAMPLE = new URL('../../../config-hold.example.yaml', import.meta.url).pathname
const OWNER = 'did:plc:ownerownerownerownerowne'

/** Environment for the CLI to open the data dir of a hold at `port`. */
const holdEnv = (dataDir: string, port: number) =>
  holdCliEnv({ dataDir, url: `http://localhost:${port}`, ownerDid: OWNER })

/** The seqs of the firehose events stored in a data dir. */
async function seqsOf(dataDir: string): Promise<number[]> {
  const db = await openDatabase(join(dataDir, 'hold.sqlite'))
  try {
    const rows = await db.db.selectFrom('repo_seq').select('seq').execute()
    return rows.map((row) => row.seq)
  } finally {
    await db.close()
  }
}

describe('atcr-hold CLI', () => {
  let fixture: HoldFixture
  /** A hold that ran once at `port` with a few extra crew records, then stopped. */
  async function preparedHold(port: number, members: string[]) {
    const dataDir = await fixture.tempDir()
    const running = await fixture.startHold({ dataDir, port })
    for (const member of members) {
      await putCrewRecord(running.ctx, member.replaceAll(':', '-'), member)
    }
    const did = running.hold.did
    const signingKey = running.hold.ctx.identity.signingKey.did()
    // Its DID document as a file, for imports after the hold is gone.
    const didDocument = join(dataDir, 'did.json')
    await writeFile(didDocument, JSON.stringify(running.hold.ctx.identity.document))
    await running.stop()
    return { dataDir, did, signingKey, didDocument }
  }

  before(async () => {
    fixture = await HoldFixture.start({ ownerDid: OWNER })
  })
  after(() => fixture?.close())

  it('config init writes every option with its default, as config-hold.example.yaml', async () => {
    const dir = await fixture.tempDir()
    const printed = await run(['config', 'init'])
    assert.equal(printed.code, 0)
    assert.equal(printed.stdout.toString(), await readFile(EXAMPLE, 'utf8'))
    const file = join(dir, 'hold.yaml')
    assert.equal((await run(['config', 'init', file])).code, 0)
    assert.deepEqual(holdConfig.load({ file, env: {} }), holdConfig.defaults())
    const again = await run(['config', 'init', file])
    assert.equal(again.code, 2)
    assert.match(again.stderr, /exists; use --force/)
    assert.equal((await run(['config', 'init', file, '--force'])).code, 0)
  })

  it('every command has --help', async () => {
    for (const args of [
      [],
      ['serve'],
      ['config', 'init'],
      ['repo', 'export'],
      ['repo', 'import'],
      ['gc'],
    ]) {
      const help = await run([...args, '--help'])
      assert.equal(help.code, 0, `${args.join(' ')} --help`)
      assert.match(help.stdout.toString(), /Usage: atcr-hold/)
    }
  })

  it('a bad config value exits 2 naming its YAML path', async () => {
    const dir = await fixture.tempDir()
    const file = join(dir, 'hold.yaml')
    await writeFile(file, 'server:\n  port: eighty\nstorage:\n  driver: floppy\n')
    const result = await run(['serve', '--config', file])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /server\.port/)
    assert.match(result.stderr, /storage\.driver/)
    const unknownCommand = await run(['launch'])
    assert.equal(unknownCommand.code, 2)
  })

  it('repo export writes a CAR that verifies against the hold key', async () => {
    const port = await freePort()
    const hold = await preparedHold(port, ['did:plc:crewcrewcrewcrewcrewcrew'])
    const result = await run(['repo', 'export'], holdEnv(hold.dataDir, port))
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stderr, '', 'nothing but the CAR, and no progress when not a TTY')
    const car = await readCarWithRoot(result.stdout)
    const verified = await verifyRepo(car.blocks, car.root, hold.did, hold.signingKey)
    const collections = new Set(verified.creates.map((op) => op.collection))
    assert.ok(collections.has(NSID.holdCaptain) && collections.has(NSID.holdCrew))
    assert.equal(verified.creates.filter((op) => op.collection === NSID.holdCrew).length, 2)
  })

  it('repo import SIGKILLed midway leaves the repo as it was, and the next import runs', async () => {
    const port = await freePort()
    const dataDir = await fixture.tempDir()
    const exportTo = async (file: string) => {
      const exported = await run(['repo', 'export'], holdEnv(dataDir, port))
      assert.equal(exported.code, 0, exported.stderr)
      await writeFile(file, exported.stdout)
    }
    let running = await fixture.startHold({ dataDir, port })
    const did = running.hold.did
    await running.stop()
    const small = join(dataDir, 'small.car')
    await exportTo(small)
    // A repo big enough that its import takes a while: 3,000 layer records.
    running = await fixture.startHold({ dataDir, port })
    for (let batch = 0; batch < 15; batch++) {
      await running.hold.ctx.repo.writer.applyWrites(
        Array.from({ length: 200 }, (_, i) => ({
          action: 'create' as const,
          collection: NSID.holdLayer,
          rkey: TID.nextStr(),
          record: {
            $type: NSID.holdLayer,
            digest: `sha256:${(batch * 200 + i).toString(16).padStart(64, '0')}`,
            size: 1,
            mediaType: 'application/vnd.oci.image.layer.v1.tar',
            manifest: `at://${OWNER}/${NSID.manifest}/${'0'.repeat(64)}`,
            userDid: OWNER,
            createdAt: new Date().toISOString(),
          },
        })),
      )
    }
    await running.stop()
    const big = join(dataDir, 'big.car')
    await exportTo(big)

    // The hold to restore into holds the small repo.
    const target = await fixture.tempDir()
    await copyFile(join(dataDir, 'signing.key'), join(target, 'signing.key'))
    assert.equal((await run(['repo', 'import', small], holdEnv(target, port))).code, 0)
    const before = await recordsOf(target, did)

    let killed = 0
    for (const delayMs of [100, 250, 400, 600, 900, 1300, 2000]) {
      const result = await run(['repo', 'import', big], holdEnv(target, port), {
        signal: AbortSignal.timeout(delayMs),
      })
      if (result.signal === 'SIGKILL') {
        killed += 1
        assert.deepEqual(await recordsOf(target, did), before, `killed after ${delayMs} ms`)
        continue
      }
      // It finished before the kill: the whole big repo, then no more rounds.
      assert.equal(result.code, 0, result.stderr)
      assert.deepEqual(
        (await recordsOf(target, did)).records,
        (await recordsOf(dataDir, did)).records,
      )
      break
    }
    assert.ok(killed > 0, 'at least one import was killed before it finished')
    // A killed import leaves no lock or half state that refuses the next one.
    const last = await run(['repo', 'import', big], holdEnv(target, port))
    assert.equal(last.code, 0, last.stderr)
    assert.deepEqual(
      (await recordsOf(target, did)).records,
      (await recordsOf(dataDir, did)).records,
    )
  })

  it('export then import into a fresh data dir with the same keys gives identical records', async () => {
    const port = await freePort()
    const source = await preparedHold(port, ['did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'])
    const exported = await run(['repo', 'export'], holdEnv(source.dataDir, port))
    const carFile = join(source.dataDir, 'backup.car')
    await writeFile(carFile, exported.stdout)

    const target = await fixture.tempDir()
    await copyFile(join(source.dataDir, 'signing.key'), join(target, 'signing.key'))
    const importedAt = Date.now()
    const imported = await run(['repo', 'import', carFile], holdEnv(target, port))
    assert.equal(imported.code, 0, imported.stderr)
    const before = await recordsOf(source.dataDir, source.did)
    const after = await recordsOf(target, source.did)
    assert.deepEqual(after.records, before.records)
    // The restored firehose continues above the old host's sequence, never from 1.
    const sourceSeqs = await seqsOf(source.dataDir)
    const targetSeqs = await seqsOf(target)
    assert.ok(Math.min(...targetSeqs) > Math.max(...sourceSeqs))
    assert.ok(Math.min(...targetSeqs) > importedAt, 'above the time of the import, in ms')
    assert.match(imported.stderr, new RegExp(`firehose seq ${Math.max(...targetSeqs)}`))

    // Importing the same file again changes nothing.
    const again = await run(['repo', 'import', carFile], holdEnv(target, port))
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual((await recordsOf(target, source.did)).head, after.head)
  })

  it('a corrupted, truncated or foreign-signed CAR fails and changes nothing', async () => {
    const port = await freePort()
    const hold = await preparedHold(port, [])
    const env = holdEnv(hold.dataDir, port)
    const car = (await run(['repo', 'export'], env)).stdout
    const before = await recordsOf(hold.dataDir, hold.did)

    const truncated = join(hold.dataDir, 'truncated.car')
    await writeFile(truncated, car.subarray(0, car.length - 10))
    const corrupted = join(hold.dataDir, 'corrupted.car')
    const flipped = Buffer.from(car)
    flipped[flipped.length - 20] = (flipped[flipped.length - 20] ?? 0) ^ 0xff
    await writeFile(corrupted, flipped)

    // The same DID (same public URL) with another signing key: a forged repo.
    const impostor = await preparedHold(port, ['did:plc:impostorimpostorimpostor'])
    const forged = join(hold.dataDir, 'forged.car')
    await writeFile(forged, (await run(['repo', 'export'], holdEnv(impostor.dataDir, port))).stdout)

    for (const file of [truncated, corrupted, forged]) {
      const result = await run(['repo', 'import', file], env)
      assert.equal(result.code, 1, `${file} must fail`)
      assert.match(result.stderr, new RegExp(file.replaceAll('.', '\\.')))
      assert.deepEqual(await recordsOf(hold.dataDir, hold.did), before, `${file} changed nothing`)
    }
    const forgedResult = await run(['repo', 'import', forged], env)
    assert.match(forgedResult.stderr, /signature/i)
  })

  it('imports two CAR files of other holds in one commit, verified against their DID documents, and refuses while the hold runs', async () => {
    const portA = await freePort()
    const portB = await freePort()
    const a = await preparedHold(portA, ['did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'])
    const b = await preparedHold(portB, ['did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'])
    const fileA = join(a.dataDir, 'a.car')
    const fileB = join(b.dataDir, 'b.car')
    await writeFile(fileA, (await run(['repo', 'export'], holdEnv(a.dataDir, portA))).stdout)
    await writeFile(fileB, (await run(['repo', 'export'], holdEnv(b.dataDir, portB))).stdout)

    const port = await freePort()
    const target = await preparedHold(port, [])
    const env = holdEnv(target.dataDir, port)
    const seqsBefore = await seqsOf(target.dataDir)
    const seqBefore = Math.max(...seqsBefore)
    const eventsBefore = seqsBefore.length
    const crewOfTarget = async () =>
      (await recordsOf(target.dataDir, target.did)).records
        .map((r) => r.uri)
        .filter((uri) => uri.includes(`/${NSID.holdCrew}/did-plc-`))

    // Holds A and B are gone: their did:web documents resolve no more.
    const unresolved = await run(['repo', 'import', fileA, fileB], env)
    assert.equal(unresolved.code, 1)
    assert.match(unresolved.stderr, /--did-document/)
    assert.deepEqual(await seqsOf(target.dataDir), seqsBefore)

    const docs = ['--did-document', a.didDocument, b.didDocument]
    const result = await run(['repo', 'import', fileA, fileB, ...docs], env)
    assert.equal(result.code, 0, result.stderr)
    // One commit: one event more, numbered above the ones before (a restore's sequence).
    const seqsAfter = await seqsOf(target.dataDir)
    assert.equal(seqsAfter.length, eventsBefore + 1, 'exactly one commit')
    assert.ok(Math.max(...seqsAfter) > seqBefore)
    // Their captain and crew records are another DID's: left out, and listed.
    assert.deepEqual(await crewOfTarget(), [])
    assert.match(
      result.stderr,
      new RegExp(`repo ${a.did}, signature verified \\(key from ${a.didDocument}`),
    )
    assert.match(
      result.stderr,
      /left out io\.atcr\.hold\.crew\/did-plc-aaaa\w+ \(did:plc:aaaa\w+\)/,
    )
    assert.match(result.stderr, /left out io\.atcr\.hold\.captain\/self/)

    const taken = await run(['repo', 'import', fileA, fileB, ...docs, '--take-access-records'], env)
    assert.equal(taken.code, 0, taken.stderr)
    assert.equal((await crewOfTarget()).length, 2)
    assert.match(taken.stderr, /took io\.atcr\.hold\.crew\/did-plc-bbbb\w+ \(did:plc:bbbb\w+\)/)

    const running = await fixture.startHold({ dataDir: target.dataDir, port })
    try {
      const refused = await run(['repo', 'import', fileA, ...docs], env)
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /in use by a running hold/)
    } finally {
      await running.stop()
    }
  })

  it('a foreign CAR signed by a key its DID document does not name fails, even with --take-access-records', async () => {
    const portA = await freePort()
    const real = await preparedHold(portA, [])
    // Another hold at the same URL (the same did:web) with its own key and an injected admin.
    const forger = await preparedHold(portA, ['did:plc:forgerforgerforgerforger'])
    const forged = join(forger.dataDir, 'forged.car')
    await writeFile(forged, (await run(['repo', 'export'], holdEnv(forger.dataDir, portA))).stdout)

    const port = await freePort()
    const target = await preparedHold(port, [])
    const env = holdEnv(target.dataDir, port)
    const before = await recordsOf(target.dataDir, target.did)
    const result = await run(
      ['repo', 'import', forged, '--did-document', real.didDocument, '--take-access-records'],
      env,
    )
    assert.equal(result.code, 1)
    assert.match(result.stderr, /signature/i)
    assert.deepEqual(await recordsOf(target.dataDir, target.did), before)
  })

  it('resolves the DID document of a CAR from a running hold', async () => {
    const sourcePort = await freePort()
    const source = await preparedHold(sourcePort, [])
    const file = join(source.dataDir, 'source.car')
    await writeFile(
      file,
      (await run(['repo', 'export'], holdEnv(source.dataDir, sourcePort))).stdout,
    )
    const running = await fixture.startHold({ dataDir: source.dataDir, port: sourcePort })
    try {
      const port = await freePort()
      const target = await preparedHold(port, [])
      const result = await run(['repo', 'import', file], holdEnv(target.dataDir, port))
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /key from resolved DID document/)
    } finally {
      await running.stop()
    }
  })
})
