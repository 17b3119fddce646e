/**
 * Quotas that hold while bytes arrive, on a real Hold with real service tokens: the parts
 * of uploads in progress count against the uploader's quota, each account's open uploads
 * and their bytes are capped, free space below `quota.owner_reserve` is the owner's, and a
 * full disk answers 507 StorageFull. The disk cases run on a real small filesystem (a
 * 16 MiB tmpfs holding the blob directory; the database stays on the ordinary disk), so
 * ENOSPC comes from the kernel; they need root to mount it and are skipped without.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import { mountSmallFilesystem, type SmallFilesystem, type TestAccount } from '@atcr/testkit'
import { sweepExpiredUploads } from '../src/uploads/index.ts'
import { digestOf, imageManifest, MiB, pushInput, storeBlobs } from './hold-data.ts'
import { HoldFixture, type TestHold } from './hold-harness.ts'
import {
  type Caller,
  complete,
  initiateUpload,
  joinCrew,
  procedure,
  putPartToHold,
  uploadParts,
  type XrpcResult,
} from './hold-xrpc.ts'

let fixture: HoldFixture
let owner: TestAccount
let alice: TestAccount
let bob: TestAccount
let carol: TestAccount

before(async () => {
  const started = await HoldFixture.start({
    accounts: ['limits-captain.test', 'alice.test', 'bob.test', 'carol.test'],
    appView: 'did:web',
  })
  fixture = started
  ;[owner, alice, bob, carol] = started.accounts
})
after(() => fixture?.close())

/** Opens an upload; its id. */
async function open(hold: TestHold, caller: TestAccount): Promise<string> {
  const opened = await initiateUpload(hold, undefined, caller)
  assert.equal(opened.status, 200, JSON.stringify(opened.body))
  return opened.body.uploadId
}

const abort = (hold: TestHold, caller: TestAccount, uploadId: string) =>
  procedure(hold, NSID.holdAbortUpload, caller, { uploadId })

/** uploadPart with a body of unknown length (chunked): the hold learns its size as it comes. */
async function putStreamedPart(
  hold: TestHold,
  uploadId: string,
  size: number,
  caller: Caller,
): Promise<XrpcResult> {
  const chunk = randomBytes(256 * 1024)
  let sent = 0
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= size) return controller.close()
      const piece = chunk.subarray(0, Math.min(chunk.length, size - sent))
      sent += piece.length
      controller.enqueue(new Uint8Array(piece))
    },
  })
  const token =
    caller && 'token' in caller
      ? caller.token
      : (
          await (caller as TestAccount).agent.com.atproto.server.getServiceAuth({
            aud: hold.did,
            lxm: NSID.holdUploadPart,
          })
        ).data.token
  const response = await fetch(`${hold.url}/xrpc/${NSID.holdUploadPart}`, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      'x-upload-id': uploadId,
      'x-part-number': '1',
      authorization: `Bearer ${token}`,
    },
    body,
    duplex: 'half',
  } as RequestInit)
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    headers: response.headers,
  }
}

describe('quotas and caps count uploads in progress', () => {
  let hold: TestHold

  before(async () => {
    hold = await fixture.startHold({
      allowAllCrew: true,
      tiers: [
        { name: 'deckhand', limit: 3 * MiB, description: '' },
        { name: 'quartermaster', limit: null, description: '' },
      ],
      overrides: {
        uploads: { max_open_per_account: 3, max_open_bytes_per_account: 5 * MiB },
      },
    })
    await joinCrew(hold, alice, bob, carol)
    const moved = await procedure(
      hold,
      NSID.holdUpdateCrewTier,
      await fixture.appView.token(hold.did, NSID.holdUpdateCrewTier),
      { userDid: carol.did, tierRank: 1 },
    )
    assert.equal(moved.status, 200, JSON.stringify(moved.body))
  })

  it("a crew member's parts in progress count against their quota: the part past it is refused", async () => {
    const first = await open(hold, alice)
    const stored = await putPartToHold(hold, first, 1, randomBytes(2 * MiB), alice)
    assert.equal(stored.status, 200, JSON.stringify(stored.body))

    // 2 MiB in progress + 2 MiB more > the 3 MiB deckhand tier, though nothing is pushed.
    const second = await open(hold, alice)
    const refused = await putPartToHold(hold, second, 1, randomBytes(2 * MiB), alice)
    assert.equal(refused.status, 403, JSON.stringify(refused.body))
    assert.equal(refused.body.error, 'QuotaExceeded')
    assert.match(String(refused.body.message), /deckhand tier allows 3145728 bytes/)
    assert.match(String(refused.body.message), /and 2097152 in uploads in progress/)

    // A body of unknown length is cut at the first byte past the quota.
    const streamed = await putStreamedPart(hold, second, 4 * MiB, alice)
    assert.equal(streamed.status, 403, JSON.stringify(streamed.body))
    assert.equal(streamed.body.error, 'QuotaExceeded')
    assert.deepEqual(await partsOf(hold, second), [], 'nothing of a refused part is kept')

    // Aborting the first upload gives the room back.
    assert.equal((await abort(hold, alice, first)).status, 200)
    const accepted = await putPartToHold(hold, second, 1, randomBytes(2 * MiB), alice)
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body))
    assert.equal((await abort(hold, alice, second)).status, 200)
  })

  it('parts sent at once cannot pass the quota together', async () => {
    const uploads = [await open(hold, alice), await open(hold, alice)]
    const results = await Promise.all(
      uploads.map((id) => putPartToHold(hold, id, 1, randomBytes(2 * MiB), alice)),
    )
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 403], JSON.stringify(results))
    for (const id of uploads) await abort(hold, alice, id)
  })

  it('a completed blob counts until a push names it, then once as pushed', async () => {
    const bytes = randomBytes(2 * MiB)
    const upload = await uploadParts(hold, undefined, [bytes], alice)
    const done = await complete(hold, upload, digestOf(bytes), alice)
    assert.equal(done.status, 200, JSON.stringify(done.body))

    // Completing without pushing does not give the room back.
    const next = await open(hold, alice)
    const refused = await putPartToHold(hold, next, 1, randomBytes(2 * MiB), alice)
    assert.equal(refused.status, 403, JSON.stringify(refused.body))
    assert.match(String(refused.body.message), /0 are pushed, 2097152 uploaded but not pushed yet/)

    // Pushed, it is counted once, as a layer.
    const config = { digest: digestOf('limits config'), size: 0 }
    await storeBlobs(hold.ctx, config)
    const layer = { digest: digestOf(bytes), size: bytes.length }
    const pushed = await procedure(
      hold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(alice.did, 'app', digestOf('limits manifest'), imageManifest([layer], config)),
    )
    assert.equal(pushed.status, 200, JSON.stringify(pushed.body))
    const again = await putPartToHold(hold, next, 1, randomBytes(2 * MiB), alice)
    assert.equal(again.status, 403, JSON.stringify(again.body))
    assert.match(String(again.body.message), /2097152 are pushed, 0 uploaded but not pushed yet/)
    const fits = await putPartToHold(hold, next, 1, randomBytes(MiB), alice)
    assert.equal(fits.status, 200, JSON.stringify(fits.body))
    await abort(hold, alice, next)

    // An unpushed blob stops counting once garbage collection may take it.
    const small = randomBytes(MiB / 2)
    const other = await uploadParts(hold, undefined, [small], alice)
    assert.equal((await complete(hold, other, digestOf(small), alice)).status, 200)
    const graceLater = Date.now() + hold.config.gc.grace_period * 1000 + 1000
    await sweepExpiredUploads(hold.ctx, { now: graceLater })
    const last = await open(hold, alice)
    const over = await putPartToHold(hold, last, 1, randomBytes(2 * MiB), alice)
    assert.match(String(over.body.message), /0 uploaded but not pushed yet/)
    await abort(hold, alice, last)
  })

  it('each account may have max_open_per_account uploads open; the owner has no cap', async () => {
    const open3 = [await open(hold, bob), await open(hold, bob), await open(hold, bob)]
    const fourth = await initiateUpload(hold, undefined, bob)
    assert.equal(fourth.status, 403, JSON.stringify(fourth.body))
    assert.equal(fourth.body.error, 'TooManyUploads')
    assert.match(String(fourth.body.message), /3 uploads open/)
    await abort(hold, bob, open3[0]!)
    open3[0] = await open(hold, bob)

    const owned: string[] = []
    for (let i = 0; i < 5; i++) owned.push(await open(hold, owner))
    for (const id of open3) await abort(hold, bob, id)
    for (const id of owned) await abort(hold, owner, id)
  })

  it("the bytes of an account's open uploads are capped even on an unlimited tier", async () => {
    const first = await open(hold, carol)
    const second = await open(hold, carol)
    const a = await putPartToHold(hold, first, 1, randomBytes(3 * MiB), carol)
    assert.equal(a.status, 200, JSON.stringify(a.body))
    const b = await putPartToHold(hold, second, 1, randomBytes(3 * MiB), carol)
    assert.equal(b.status, 403, JSON.stringify(b.body))
    assert.equal(b.body.error, 'QuotaExceeded')
    assert.match(String(b.body.message), /Open uploads may hold 5242880 bytes per account/)
    // The owner is not capped.
    const big = await open(hold, owner)
    const mine = await putPartToHold(hold, big, 1, randomBytes(6 * MiB), owner)
    assert.equal(mine.status, 200, JSON.stringify(mine.body))
    for (const id of [first, second]) await abort(hold, carol, id)
    await abort(hold, owner, big)
  })
})

/** The part files an upload has in storage (filesystem driver). */
async function partsOf(hold: TestHold, uploadId: string): Promise<string[]> {
  const row = await hold.ctx.db.db
    .selectFrom('hold_upload')
    .select('driver_upload_id')
    .where('id', '=', uploadId)
    .executeTakeFirstOrThrow()
  const root = hold.config.storage.filesystem.root_dir ?? join(hold.dataDir, 'blobs')
  const names = await readdir(join(root, '.multipart', row.driver_upload_id))
  return names.filter((name) => name !== 'target')
}

const SMALL_FS = 16 * MiB
const RESERVE = 8 * MiB
describe('the owner reserve and a full disk (a 16 MiB tmpfs)', {
  skip: process.getuid?.() === 0 ? false : 'mounting a tmpfs needs root',
}, () => {
  let hold: TestHold
  let fs: SmallFilesystem

  before(async () => {
    fs = await mountSmallFilesystem(SMALL_FS)
    hold = await fixture.startHold({
      allowAllCrew: true,
      overrides: {
        storage: { filesystem: { root_dir: fs.dir } },
        quota: { owner_reserve: RESERVE },
      },
    })
    await joinCrew(hold, alice)
  })
  // The hold lets go of the filesystem before it is unmounted; unmounted before removed.
  after(async () => {
    await hold?.stop()
    await fs?.close()
  })

  const free = async () => {
    const info = await statfs(fs.dir)
    return info.bavail * info.bsize
  }

  it('crew parts that would eat into the reserve are refused with 507; the owner still pushes', async () => {
    // 16 MiB free: 6 MiB leaves 10 MiB, above the 8 MiB reserve.
    const fits = await open(hold, alice)
    const ok = await putPartToHold(hold, fits, 1, randomBytes(6 * MiB), alice)
    assert.equal(ok.status, 200, JSON.stringify(ok.body))

    // Another 4 MiB would leave less than the reserve.
    const upload = await open(hold, alice)
    const refused = await putPartToHold(hold, upload, 1, randomBytes(4 * MiB), alice)
    assert.equal(refused.status, 507, JSON.stringify(refused.body))
    assert.equal(refused.body.error, 'StorageFull')
    assert.match(String(refused.body.message), /kept for the hold's owner/)
    // Of unknown length, it is cut once the reserve is reached.
    const streamed = await putStreamedPart(hold, upload, 4 * MiB, alice)
    assert.equal(streamed.status, 507, JSON.stringify(streamed.body))
    assert.ok((await free()) >= RESERVE - MiB, `${await free()} bytes free`)

    // The owner writes into the reserve: a whole blob, uploaded and completed.
    const blob = randomBytes(5 * MiB)
    const mine = await uploadParts(hold, undefined, [blob], owner)
    const done = await complete(hold, mine, digestOf(blob), owner)
    assert.equal(done.status, 200, JSON.stringify(done.body))

    // Below the reserve, crew members cannot even open an upload.
    const opened = await initiateUpload(hold, undefined, alice)
    assert.equal(opened.status, 507, JSON.stringify(opened.body))
    assert.equal(opened.body.error, 'StorageFull')
    for (const id of [fits, upload]) await abort(hold, alice, id)
  })

  it('a full disk answers 507 StorageFull, and nothing of the part stays behind', async () => {
    const upload = await open(hold, owner)
    const before = await free()
    // Declared larger than the free space: refused before a byte is written.
    const declared = await putPartToHold(hold, upload, 1, randomBytes(before + MiB), owner)
    assert.equal(declared.status, 507, JSON.stringify(declared.body))
    assert.equal(declared.body.error, 'StorageFull')
    // Of unknown length: written until the kernel says ENOSPC.
    const streamed = await putStreamedPart(hold, upload, before + MiB, owner)
    assert.equal(streamed.status, 507, JSON.stringify(streamed.body))
    assert.equal(streamed.body.error, 'StorageFull')
    assert.match(String(streamed.body.message), /^Storage full/)
    assert.deepEqual(await readdir(join(fs.dir, '.tmp')), [], 'no partial part is left')
    assert.equal(await free(), before)
    assert.equal((await abort(hold, owner, upload)).status, 200)
  })
})
