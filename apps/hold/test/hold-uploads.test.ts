/**
 * The multipart upload methods (initiateUpload, getPartUploadUrl, uploadPart,
 * completeUpload, abortUpload) on a real Hold, with real service tokens from the test
 * PDS, on the filesystem driver and on S3. S3 is s3rver behind the storage tests' gap
 * proxy (storage-s3-gaps.ts), which supplies what s3rver lacks (AbortMultipartUpload,
 * part etag checks on completion) as AWS documents them.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { HOLD_UPLOAD_BLOB, NSID, validateOutput } from '@atcr/core/lexicons'
import type { TestAccount } from '@atcr/testkit'
import { sweepExpiredUploads } from '../src/uploads/index.ts'
import { digestOf, MiB, putCrewRecord } from './hold-data.ts'
import { HoldFixture, type TestHold, type TestStorage } from './hold-harness.ts'
import {
  complete,
  getBlob,
  initiateUpload,
  procedure,
  putPartToHold,
  sendPart,
  uploadBlobToHold,
  uploadParts,
} from './hold-xrpc.ts'
import type { S3GapProxy } from './storage-s3-gaps.ts'

let fixture: HoldFixture
let owner: TestAccount
let other: TestAccount
let proxy: S3GapProxy

before(async () => {
  const started = await HoldFixture.start({
    accounts: ['hold-captain.test', 'hold-sailor.test'],
    s3: true,
  })
  fixture = started
  ;[owner, other] = started.accounts
  proxy = fixture.s3.proxy
})
after(() => fixture?.close())

/** Everything under the hold's storage prefix `uploads/` (assembled data in flight). */
async function uploadLeftovers(hold: TestHold): Promise<string[]> {
  const paths: string[] = []
  for await (const object of hold.ctx.storage.list('uploads')) paths.push(object.path)
  return paths
}

async function uploadRows(hold: TestHold): Promise<string[]> {
  const rows = await hold.ctx.db.db.selectFrom('hold_upload').select('id').execute()
  return rows.map((row) => row.id)
}

/** The bytes of a blob as a client gets them (following a presigned redirect). */
async function download(hold: TestHold, digest: string): Promise<Buffer> {
  let response = await getBlob(hold, digest, { credential: owner })
  if (response.status === 307) response = await fetch(response.headers.get('location') ?? '')
  assert.equal(response.status, 200, `download of ${digest}`)
  return Buffer.from(await response.arrayBuffer())
}

function blob(parts: number[]): { parts: Buffer[]; whole: Buffer; digest: string } {
  const chunks = parts.map((size) => randomBytes(size))
  const whole = Buffer.concat(chunks)
  return { parts: chunks, whole, digest: digestOf(whole) }
}

function uploadSuite(name: string, storage: () => TestStorage): void {
  describe(`uploads (${name})`, () => {
    let hold: TestHold

    before(async () => {
      hold = await fixture.startHold({ storage: storage() })
    })
    after(async () => {
      await hold?.close()
    })

    it('uploads a blob in several parts; it is readable under its digest afterwards', async () => {
      const { parts, whole, digest } = blob([5 * MiB, 5 * MiB, 1234])
      const upload = await uploadParts(hold, digest, parts, owner)
      const done = await complete(hold, upload, digest, owner)
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.deepEqual(done.body, { status: 'completed', digest })
      validateOutput(NSID.holdCompleteUpload, done.body)
      assert.ok((await download(hold, digest)).equals(whole))
      const head = await getBlob(hold, digest, { method: 'HEAD', credential: owner })
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), String(whole.length))
      // Nothing of the upload is left behind, and its id is spent.
      assert.deepEqual(await uploadLeftovers(hold), [])
      assert.ok(!(await uploadRows(hold)).includes(upload.uploadId))
      const again = await complete(hold, upload, digest, owner)
      assert.equal(again.status, 400)
      assert.equal(again.body.error, 'InvalidUploadId')
    })

    it('stores a small blob in one call (uploadBlob): readable, nothing left, wrong bytes refused', async () => {
      const { whole, digest } = blob([4096])
      const rowsBefore = await uploadRows(hold)
      const done = await uploadBlobToHold(hold, digest, whole, owner)
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.deepEqual(done.body, { status: 'completed', digest })
      assert.ok((await download(hold, digest)).equals(whole))
      assert.deepEqual(await uploadLeftovers(hold), [])
      assert.deepEqual(await uploadRows(hold), rowsBefore)

      const claimed = digestOf(Buffer.from('something else'))
      const refused = await uploadBlobToHold(hold, claimed, randomBytes(100), owner)
      assert.equal(refused.status, 400)
      assert.equal(refused.body.error, 'InvalidDigest')
      const missing = await getBlob(hold, claimed, { credential: owner })
      assert.equal(missing.status, 404)
      await missing.body?.cancel()
      assert.deepEqual(await uploadLeftovers(hold), [])
      assert.deepEqual(await uploadRows(hold), rowsBefore)

      const anonymous = await fetch(
        `${hold.url}/xrpc/${HOLD_UPLOAD_BLOB}?${new URLSearchParams({ digest })}`,
        { method: 'PUT', body: whole },
      )
      assert.equal(anonymous.status, 401)
      await anonymous.body?.cancel()
    })

    it('refuses bytes that do not hash to the digest: InvalidDigest, nothing visible', async () => {
      const { parts, digest: actual } = blob([5 * MiB, 10])
      const claimed = digestOf(Buffer.from('something else'))
      const upload = await uploadParts(hold, claimed, parts, owner)
      const done = await complete(hold, upload, claimed, owner)
      assert.equal(done.status, 400)
      assert.equal(done.body.error, 'InvalidDigest')
      assert.match(String(done.body.message), new RegExp(actual))
      for (const digest of [claimed, actual]) {
        const response = await getBlob(hold, digest, { credential: owner })
        assert.equal(response.status, 404)
        assert.equal(((await response.json()) as { error: string }).error, 'BlobNotFound')
      }
      assert.deepEqual(await uploadLeftovers(hold), [])
      assert.ok(!(await uploadRows(hold)).includes(upload.uploadId))
    })

    it('takes an upload initiated without a digest, checking the one named at completion', async () => {
      const { parts, whole, digest } = blob([5 * MiB, 321])
      const wrong = await uploadParts(hold, undefined, parts, owner)
      const row = await hold.ctx.db.db
        .selectFrom('hold_upload')
        .select('digest')
        .where('id', '=', wrong.uploadId)
        .executeTakeFirst()
      assert.deepEqual(row, { digest: null })
      const refused = await complete(hold, wrong, digestOf(Buffer.from('not these')), owner)
      assert.equal(refused.status, 400)
      assert.equal(refused.body.error, 'InvalidDigest')
      assert.ok(!(await uploadRows(hold)).includes(wrong.uploadId))

      const upload = await uploadParts(hold, undefined, parts, owner)
      const done = await complete(hold, upload, digest, owner)
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.deepEqual(done.body, { status: 'completed', digest })
      assert.ok((await download(hold, digest)).equals(whole))
      assert.deepEqual(await uploadLeftovers(hold), [])
    })

    it('verifies the digest whatever order the parts came in, and takes the last version of each', async () => {
      const { parts, whole, digest } = blob([5 * MiB, 5 * MiB, 100])
      const [one, two, three] = parts as [Buffer, Buffer, Buffer]
      const send = async (uploadId: string, partNumber: number, bytes: Buffer) => {
        const target = await procedure<{ url: string; headers?: Record<string, string> }>(
          hold,
          NSID.holdGetPartUploadUrl,
          owner,
          { uploadId, partNumber },
        )
        assert.equal(target.status, 200, JSON.stringify(target.body))
        const put = await sendPart(hold, target.body, bytes, owner)
        assert.equal(put.status, 200, put.body)
        assert.ok(put.etag)
        return { partNumber, etag: put.etag }
      }
      const start = async () => {
        const initiated = await initiateUpload(hold, digest, owner)
        assert.equal(initiated.status, 200)
        return initiated.body.uploadId
      }

      // Out of order (3, 1, 2): a wrong digest is still refused, the right one accepted.
      const shuffled = await start()
      const sentShuffled = [await send(shuffled, 3, three), await send(shuffled, 1, one)]
      sentShuffled.push(await send(shuffled, 2, two))
      const claimed = digestOf(Buffer.from('not these bytes'))
      const refused = await complete(
        hold,
        { uploadId: shuffled, parts: sentShuffled },
        claimed,
        owner,
      )
      assert.equal(refused.body.error, 'InvalidDigest')
      assert.match(String(refused.body.message), new RegExp(digest))
      const accepted = await start()
      const sentInOrder = [await send(accepted, 3, three), await send(accepted, 1, one)]
      sentInOrder.push(await send(accepted, 2, two))
      const done = await complete(hold, { uploadId: accepted, parts: sentInOrder }, digest, owner)
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.ok((await download(hold, digest)).equals(whole))

      // In order, the last part sent twice: the second version is what counts.
      const retried = {
        uploadId: await start(),
        parts: [] as { partNumber: number; etag: string }[],
      }
      const first = await send(retried.uploadId, 1, one)
      await send(retried.uploadId, 2, two)
      const garbled = await send(retried.uploadId, 2, randomBytes(two.length))
      retried.parts = [first, garbled, await send(retried.uploadId, 3, three)]
      const mismatch = await complete(hold, retried, digest, owner)
      assert.equal(mismatch.body.error, 'InvalidDigest', 'the garbled retry replaced part 2')

      const fixed = { uploadId: await start(), parts: [] as { partNumber: number; etag: string }[] }
      const firstAgain = await send(fixed.uploadId, 1, one)
      const stale = await send(fixed.uploadId, 2, randomBytes(two.length))
      const good = await send(fixed.uploadId, 2, two)
      const last = await send(fixed.uploadId, 3, three)
      fixed.parts = [firstAgain, good, last]
      const staleList = { uploadId: fixed.uploadId, parts: [firstAgain, stale, last] }
      const missing = await complete(hold, staleList, digest, owner)
      assert.equal(missing.body.error, 'MissingParts', 'an earlier version of part 2 is gone')
      const fine = await complete(hold, fixed, digest, owner)
      assert.equal(fine.status, 200, JSON.stringify(fine.body))
      assert.ok((await download(hold, digest)).equals(whole))
      assert.deepEqual(await uploadLeftovers(hold), [])
    })

    it('refuses malformed digests at initiate and complete', async () => {
      const initiated = await initiateUpload(hold, 'sha256:xyz', owner)
      assert.equal(initiated.status, 400)
      assert.equal(initiated.body.error, 'InvalidDigest')
      const { parts, digest } = blob([100])
      const upload = await uploadParts(hold, digest, parts, owner)
      const done = await complete(hold, upload, 'md5:abc', owner)
      assert.equal(done.body.error, 'InvalidDigest')
      // The upload is still open: the right digest completes it.
      assert.equal((await complete(hold, upload, digest, owner)).status, 200)
    })

    it('answers MissingParts for parts never sent or with a wrong etag; the upload stays open', async () => {
      const { parts, whole, digest } = blob([5 * MiB, 77])
      const upload = await uploadParts(hold, digest, parts, owner)
      const [first, second] = upload.parts as [(typeof upload.parts)[0], (typeof upload.parts)[0]]
      const cases = [
        [first, { partNumber: 3, etag: second.etag }],
        [first, { partNumber: 2, etag: '"0123456789abcdef0123456789abcdef"' }],
        [],
      ]
      for (const list of cases) {
        const done = await procedure(hold, NSID.holdCompleteUpload, owner, {
          uploadId: upload.uploadId,
          digest,
          parts: list,
        })
        assert.equal(done.status, 400, JSON.stringify(list))
        assert.equal(done.body.error, 'MissingParts', JSON.stringify(done.body))
      }
      // Parts may be listed in any order.
      const done = await complete(hold, { ...upload, parts: [second, first] }, digest, owner)
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.ok((await download(hold, digest)).equals(whole))
    })

    it('answers InvalidUploadId for unknown ids and for another account’s upload', async () => {
      const { parts, digest } = blob([10])
      const upload = await uploadParts(hold, digest, parts, owner)
      // `other` is made a writer, so only the ownership of the upload is in question.
      await putCrewRecord(hold.ctx, 'other-writer', other.did)
      for (const [uploadId, who] of [
        ['no-such-upload', owner],
        [upload.uploadId, other],
      ] as const) {
        const calls = [
          procedure(hold, NSID.holdGetPartUploadUrl, who, { uploadId, partNumber: 1 }),
          complete(hold, { uploadId, parts: upload.parts }, digest, who),
          procedure(hold, NSID.holdAbortUpload, who, { uploadId }),
          putPartToHold(hold, uploadId, 1, Buffer.from('x'), who),
        ]
        for (const result of await Promise.all(calls)) {
          assert.equal(result.status, 400)
          assert.equal(result.body.error, 'InvalidUploadId')
        }
      }
      await hold.ctx.repo.writer.deleteRecord(NSID.holdCrew, 'other-writer')
      assert.equal((await complete(hold, upload, digest, owner)).status, 200)
    })

    it('answers InvalidPartNumber for part numbers outside 1..10000', async () => {
      const { parts, digest } = blob([10])
      const upload = await uploadParts(hold, digest, parts, owner)
      for (const partNumber of [0, 10001]) {
        const url = await procedure(hold, NSID.holdGetPartUploadUrl, owner, {
          uploadId: upload.uploadId,
          partNumber,
        })
        assert.equal(url.body.error, 'InvalidPartNumber')
      }
      for (const partNumber of ['0', '10001', 'one', '']) {
        const put = await putPartToHold(hold, upload.uploadId, partNumber, Buffer.from('x'), owner)
        assert.equal(put.status, 400)
        assert.equal(put.body.error, 'InvalidPartNumber')
      }
      await procedure(hold, NSID.holdAbortUpload, owner, { uploadId: upload.uploadId })
    })

    it('aborts an upload: parts and state are dropped, the id is spent', async () => {
      const { parts, digest } = blob([5 * MiB, 10])
      const upload = await uploadParts(hold, digest, parts, owner)
      const aborted = await procedure(hold, NSID.holdAbortUpload, owner, {
        uploadId: upload.uploadId,
      })
      assert.deepEqual(aborted.body, { status: 'aborted' })
      validateOutput(NSID.holdAbortUpload, aborted.body)
      assert.ok(!(await uploadRows(hold)).includes(upload.uploadId))
      assert.deepEqual(await uploadLeftovers(hold), [])
      const put = await putPartToHold(hold, upload.uploadId, 3, Buffer.from('x'), owner)
      assert.equal(put.body.error, 'InvalidUploadId')
      const done = await complete(hold, upload, digest, owner)
      assert.equal(done.body.error, 'InvalidUploadId')
      assert.equal((await getBlob(hold, digest, { credential: owner })).status, 404)
    })

    it('finishes an upload begun before a restart of the hold', async () => {
      const { parts, whole, digest } = blob([5 * MiB, 5 * MiB, 99])
      const firstTwo = await uploadParts(hold, digest, parts.slice(0, 2), owner)
      await hold.restart()
      const url = await procedure<{ url: string; headers?: Record<string, string> }>(
        hold,
        NSID.holdGetPartUploadUrl,
        owner,
        { uploadId: firstTwo.uploadId, partNumber: 3 },
      )
      assert.equal(url.status, 200)
      const third = await sendPart(hold, url.body, parts[2] ?? Buffer.alloc(0), owner)
      assert.equal(third.status, 200, third.body)
      const done = await complete(
        hold,
        {
          uploadId: firstTwo.uploadId,
          parts: [...firstTwo.parts, { partNumber: 3, etag: third.etag ?? '' }],
        },
        digest,
        owner,
      )
      assert.equal(done.status, 200, JSON.stringify(done.body))
      assert.ok((await download(hold, digest)).equals(whole))
    })

    it('sweeps uploads idle for longer than uploads.expiry', async () => {
      const { parts, digest } = blob([5 * MiB, 10])
      const idle = await uploadParts(hold, digest, parts, owner)
      const expiry = hold.config.uploads.expiry * 1000
      const lateUrl = await procedure<{ url: string }>(hold, NSID.holdGetPartUploadUrl, owner, {
        uploadId: idle.uploadId,
        partNumber: 3,
      })
      // Not yet expired: kept.
      const early = await sweepExpiredUploads(hold.ctx, { now: Date.now() + expiry / 2 })
      assert.equal(early.aborted, 0)
      assert.ok((await uploadRows(hold)).includes(idle.uploadId))
      const swept = await sweepExpiredUploads(hold.ctx, { now: Date.now() + expiry + 1000 })
      assert.ok(swept.aborted >= 1)
      assert.ok(!(await uploadRows(hold)).includes(idle.uploadId))
      const url = await procedure(hold, NSID.holdGetPartUploadUrl, owner, {
        uploadId: idle.uploadId,
        partNumber: 3,
      })
      assert.equal(url.body.error, 'InvalidUploadId')
      const done = await complete(hold, idle, digest, owner)
      assert.equal(done.body.error, 'InvalidUploadId')
      if (hold.config.storage.driver === 'filesystem') {
        // The filesystem driver's parts are gone too.
        assert.deepEqual(await readdir(join(hold.dataDir, 'blobs', '.multipart')), [])
      } else {
        // The S3 multipart upload was aborted: its presigned part URL no longer works.
        const late = await fetch(lateUrl.body.url, { method: 'PUT', body: 'late' })
        assert.equal(late.status, 404)
        assert.match(await late.text(), /NoSuchUpload/)
      }
    })
  })
}

uploadSuite('filesystem', () => ({ driver: 'filesystem' }))
uploadSuite('s3, presigned part URLs', () => fixture.s3.storage)

describe('uploads (s3, parts through the hold)', () => {
  it('sends parts to uploadPart when presigned redirects are off', async () => {
    const hold = await fixture.startHold({
      storage: fixture.s3.storage,
      overrides: { storage: { presigned_redirects: false } },
    })
    try {
      const { parts, whole, digest } = blob([5 * MiB, 321])
      const initiated = await initiateUpload(hold, digest, owner)
      const url = await procedure(hold, NSID.holdGetPartUploadUrl, owner, {
        uploadId: initiated.body.uploadId,
        partNumber: 1,
      })
      validateOutput(NSID.holdGetPartUploadUrl, url.body)
      assert.deepEqual(url.body, {
        url: `${hold.url}/xrpc/io.atcr.hold.uploadPart`,
        method: 'PUT',
        headers: { 'X-Upload-Id': initiated.body.uploadId, 'X-Part-Number': '1' },
      })
      await procedure(hold, NSID.holdAbortUpload, owner, { uploadId: initiated.body.uploadId })
      const upload = await uploadParts(hold, digest, parts, owner)
      assert.equal((await complete(hold, upload, digest, owner)).status, 200)
      let response = await getBlob(hold, digest, { credential: owner })
      assert.equal(response.status, 200, 'streamed, not redirected')
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(whole))
      response = await getBlob(hold, digest, {
        credential: owner,
        headers: { range: 'bytes=5242880-' },
      })
      assert.equal(response.status, 206)
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(whole.subarray(5 * MiB)))
    } finally {
      await hold.close()
    }
  })

  it('hands out presigned S3 part URLs when it can', async () => {
    const hold = await fixture.startHold({ storage: fixture.s3.storage })
    try {
      const initiated = await initiateUpload(hold, digestOf(Buffer.from('x')), owner)
      const url = await procedure<{ url: string; method: string }>(
        hold,
        NSID.holdGetPartUploadUrl,
        owner,
        { uploadId: initiated.body.uploadId, partNumber: 2 },
      )
      const parsed = new URL(url.body.url)
      assert.equal(parsed.origin, proxy.publicEndpoint)
      assert.equal(parsed.searchParams.get('partNumber'), '2')
      assert.ok(parsed.searchParams.get('X-Amz-Signature'))
      assert.equal(url.body.method, 'PUT')
    } finally {
      await hold.close()
    }
  })
})

describe('the periodic sweeper', () => {
  it('removes abandoned uploads on its own when the expiry is tiny', async () => {
    const hold = await fixture.startHold({ overrides: { uploads: { expiry: 1 } } })
    try {
      const initiated = await initiateUpload(hold, digestOf(Buffer.from('x')), owner)
      assert.equal(initiated.status, 200)
      const deadline = Date.now() + 10_000
      while ((await uploadRows(hold)).length > 0) {
        assert.ok(Date.now() < deadline, 'the sweeper did not remove the upload')
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      assert.deepEqual(await readdir(join(hold.dataDir, 'blobs', '.multipart')), [])
    } finally {
      await hold.close()
    }
  })
})
