/**
 * A hold whose storage is full, seen through the AppView: the hold answers 507
 * StorageFull, and OCI clients get DENIED (which they do not retry) naming the cause, not
 * a 503 they would retry. The hold (a real atcr-hold process) keeps its blobs on a real
 * 8 MiB tmpfs, so the full disk is the kernel's ENOSPC; mounting needs root, and the test
 * is skipped without it.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import {
  hasCommand,
  mountSmallFilesystem,
  run,
  type SmallFilesystem,
  writeOciImage,
} from '@atcr/testkit'
import { type OciErrorBody, Pusher, sha256 } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const MiB = 1024 * 1024
const skip =
  process.getuid?.() !== 0
    ? 'mounting a tmpfs needs root'
    : !hasCommand('skopeo')
      ? 'missing skopeo'
      : false

describe('a hold out of storage, through the AppView', { skip }, () => {
  let fs: SmallFilesystem
  let stack: RegistryStack
  let dir: string

  before(async () => {
    fs = await mountSmallFilesystem(8 * MiB)
    stack = await startRegistryStack({
      holdConfig: {
        storage: { filesystem: { root_dir: fs.dir } },
        quota: { owner_reserve: 4 * MiB },
      },
    })
    dir = await mkdtemp(join(tmpdir(), 'atcr-storage-full-'))
  })
  // The hold process lets go of the filesystem before it is unmounted, and it is
  // unmounted before its mount point is removed.
  after(async () => {
    await stack?.close()
    await fs?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it("a crew member's blob that would take the owner's reserve is DENIED, saying why", async () => {
    // bob is crew (allow_all_crew), alice owns the hold: 5 MiB would leave 3 of the 4 kept.
    const bob = new Pusher(stack, stack.bob, stack.nameOf(stack.bob, 'big'))
    const bytes = randomBytes(5 * MiB)
    const response = await bob.fetch(`/v2/${bob.name}/blobs/uploads/?digest=${sha256(bytes)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    })
    const body = (await response.json()) as OciErrorBody
    assert.equal(response.status, 403, JSON.stringify(body))
    assert.equal(body.errors[0]?.code, 'DENIED')
    assert.match(body.errors[0]!.message, /out of storage \(507 Insufficient Storage\)/)
    assert.match(body.errors[0]!.message, /kept for the hold's owner/)
  })

  it('skopeo pushing more than the disk holds fails at once with the cause', async () => {
    const layout = join(dir, 'layout')
    await writeOciImage(layout, { tag: 'v1', layers: [{ randomBytes: 12 * MiB }] })
    const creds = `${stack.alice.did}:${stack.alice.appPassword}`
    const pushed = await run(
      'skopeo',
      [
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds,
        `oci:${layout}:v1`,
        `docker://${stack.host}/${stack.nameOf(stack.alice, 'too-big')}:v1`,
      ],
      { check: false },
    )
    assert.notEqual(pushed.code, 0, pushed.stdout)
    assert.match(pushed.stderr, /denied/i, pushed.stderr)
    assert.match(pushed.stderr, /out of storage \(507 Insufficient Storage\)/, pushed.stderr)
    assert.doesNotMatch(pushed.stderr, /retrying/i, 'DENIED is not retried')
  })
})
