import assert from 'node:assert/strict'
import { utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import type { TestAccount } from '@atcr/testkit'
import { TID } from '@atproto/common'
import { collectGarbage, type GcReport } from '../src/gc/index.ts'
import { GC_LXM, GC_ROUTE } from '../src/gc/route.ts'
import { withRecordLock } from '../src/record-lock.ts'
import { digestOf, imageManifest, pushInput, putBlob } from './hold-data.ts'
import { HoldFixture, holdCliEnv, runHoldCli, type TestHold } from './hold-harness.ts'
import { initiateUpload, joinCrew, procedure } from './hold-xrpc.ts'

const GRACE = 3600
const TWO_HOURS_AGO = () => new Date(Date.now() - 2 * 3600 * 1000)

/** The CLI's output as text. */
async function runCli(args: string[], env: Record<string, string>) {
  const result = await runHoldCli(args, env)
  return { ...result, stdout: result.stdout.toString() }
}

describe('garbage collection', () => {
  let fixture: HoldFixture
  let hold: TestHold
  let owner: TestAccount
  let alice: TestAccount
  const blobs = {
    layer: { digest: digestOf('gc layer'), size: 1200 },
    config: { digest: digestOf('gc config'), size: 80 },
    garbage: { digest: digestOf('gc garbage'), size: 700 },
    young: { digest: digestOf('gc young'), size: 50 },
    uploading: { digest: digestOf('gc uploading'), size: 60 },
  }
  const paths = new Map<string, string>()

  /** Stores a blob; `old` backdates it past the grace period. */
  async function store(blob: { digest: string; size: number }, old: boolean) {
    const path = await putBlob(hold.ctx, blob.digest, new Uint8Array(blob.size))
    paths.set(blob.digest, path)
    if (old) {
      const file = join(hold.dataDir, 'blobs', path)
      await utimes(file, TWO_HOURS_AGO(), TWO_HOURS_AGO())
    }
    return path
  }

  const exists = async (digest: string) =>
    (await hold.ctx.storage.stat(paths.get(digest) ?? '')) !== null

  const cliEnv = () => ({
    ...holdCliEnv({ dataDir: hold.dataDir, url: hold.url, ownerDid: owner.did }),
    ATCR_HOLD_GC_GRACE_PERIOD: String(GRACE),
  })

  async function gcOverHttp(caller: TestAccount | null, body: unknown) {
    return procedure(hold, GC_LXM, caller, body, { path: GC_ROUTE })
  }

  before(async () => {
    const started = await HoldFixture.start({ accounts: ['gc-captain.test', 'alice.test'] })
    fixture = started
    ;[owner, alice] = started.accounts
    hold = await fixture.startHold({
      allowAllCrew: true,
      overrides: { gc: { grace_period: GRACE } },
    })
    await joinCrew(hold, alice)

    await store(blobs.layer, true)
    await store(blobs.config, true)
    await store(blobs.garbage, true)
    await store(blobs.young, false)
    await store(blobs.uploading, true)
    const pushed = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(
        alice.did,
        'app',
        digestOf('gc manifest'),
        imageManifest([blobs.layer], blobs.config),
      ),
    )
    assert.equal(pushed.status, 200, JSON.stringify(pushed.body))
    // An upload of the same digest is in progress (say, a re-push of that blob).
    const upload = await initiateUpload(hold, blobs.uploading.digest, alice)
    assert.equal(upload.status, 200, JSON.stringify(upload.body))
  })

  after(() => fixture?.close())

  it('only the owner may run it over HTTP', async () => {
    const byAlice = await gcOverHttp(alice, { dryRun: true })
    assert.equal(byAlice.status, 403)
    const anonymous = await gcOverHttp(null, { dryRun: true })
    assert.equal(anonymous.status, 401)
    const noMode = await gcOverHttp(owner, {})
    assert.equal(noMode.status, 400)
  })

  it('a dry run reports the old unreferenced blob and its bytes, and deletes nothing', async () => {
    const res = await gcOverHttp(owner, { dryRun: true })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const report = res.body as unknown as GcReport
    assert.equal(report.dryRun, true)
    assert.deepEqual(
      report.deleted.map((b) => b.digest),
      [blobs.garbage.digest],
    )
    assert.equal(report.reclaimedBytes, 700)
    assert.equal(report.blobsScanned, 5)
    assert.equal(report.keptReferenced, 2)
    assert.equal(report.keptRecent, 1)
    assert.equal(report.keptUploading, 1)
    for (const blob of Object.values(blobs)) assert.ok(await exists(blob.digest), blob.digest)
  })

  it('the CLI dry run beside the running hold lists the same and deletes nothing', async () => {
    const result = await runCli(['gc', '--dry-run'], cliEnv())
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, new RegExp(`would delete ${blobs.garbage.digest} 700 bytes`))
    assert.match(result.stdout, /dry run: 1 of 5 blobs would be deleted, 700 bytes/)
    assert.doesNotMatch(result.stdout, new RegExp(blobs.layer.digest))
    assert.ok(await exists(blobs.garbage.digest))
  })

  it('a collection deletes the old unreferenced blob and keeps the rest', async () => {
    const res = await gcOverHttp(owner, { dryRun: false })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const report = res.body as unknown as GcReport
    assert.deepEqual(
      report.deleted.map((b) => b.digest),
      [blobs.garbage.digest],
    )
    assert.equal(report.reclaimedBytes, 700)
    assert.deepEqual(report.failed, [])
    assert.equal(await exists(blobs.garbage.digest), false)
    for (const kept of [blobs.layer, blobs.config, blobs.young, blobs.uploading]) {
      assert.ok(await exists(kept.digest), kept.digest)
    }
  })

  it('the CLI collection beside the running hold deletes new garbage', async () => {
    const more = { digest: digestOf('gc more garbage'), size: 321 }
    await store(more, true)
    const result = await runCli(['gc'], cliEnv())
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, new RegExp(`deleted ${more.digest} 321 bytes`))
    assert.match(result.stdout, /1 of 5 blobs deleted, 321 bytes/)
    assert.equal(await exists(more.digest), false)
    assert.ok(await exists(blobs.layer.digest))
  })

  it('a blob referenced between the mark and its deletion is kept', async () => {
    const late = { digest: digestOf('gc late reference'), size: 99 }
    await store(late, true)
    const ctx = hold.ctx
    const report = await collectGarbage(
      {
        db: ctx.db.db,
        storage: ctx.storage,
        gracePeriod: GRACE,
        // A push lands just before the last check of this blob.
        lock: async (task) => {
          await withRecordLock(ctx, () =>
            ctx.repo.writer.createRecord(NSID.holdLayer, TID.nextStr(), {
              $type: NSID.holdLayer,
              digest: late.digest,
              size: late.size,
              mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
              manifest: `at://${alice.did}/io.atcr.manifest/${digestOf('late').slice(7)}`,
              userDid: alice.did,
              createdAt: new Date().toISOString(),
            }),
          )
          return withRecordLock(ctx, task)
        },
      },
      { dryRun: false },
    )
    assert.deepEqual(report.deleted, [])
    assert.equal(report.keptAtRecheck, 1)
    assert.ok(await exists(late.digest))
  })

  it('the CLI refuses a data dir without a hold database (exit 2)', async () => {
    const empty = await fixture.tempDir()
    const result = await runCli(['gc', '--dry-run'], {
      ...cliEnv(),
      ATCR_HOLD_SERVER_DATA_DIR: empty,
    })
    assert.equal(result.code, 2, result.stderr)
    assert.match(result.stderr, /no hold database/)
  })
})
