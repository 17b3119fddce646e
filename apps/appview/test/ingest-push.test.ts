// The AppView's own writes reach the index at once (no firehose involved): a push through
// the registry (real PLC, PDS, hold process) leaves the manifest, its tag and the owner's
// account in the index; moving and deleting tags, and deleting the manifest, follow.
import assert from 'node:assert/strict'
import { after, afterEach, before, describe, it } from 'node:test'
import { Pusher } from './registry-client.ts'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

describe('write-through of registry writes into the index', () => {
  let stack: RegistryStack
  let alice: Pusher
  const name = () => stack.nameOf(stack.alice, 'tools/app')

  before(async () => {
    stack = await startRegistryStack()
    alice = new Pusher(stack, stack.alice, name())
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))
  after(() => stack?.close())

  const db = () => stack.appview.ctx.db.db
  const tags = () =>
    db()
      .selectFrom('index_tag')
      .select(['tag', 'digest'])
      .where('did', '=', stack.alice.did)
      .where('repository', '=', 'tools/app')
      .orderBy('tag')
      .execute()

  it('a push is in the index when the PUT answers', async () => {
    const image = await alice.image('one')
    assert.equal((await alice.putManifest('v1', image.bytes)).status, 201)
    const manifest = await db()
      .selectFrom('index_manifest')
      .selectAll()
      .where('did', '=', stack.alice.did)
      .executeTakeFirstOrThrow()
    assert.equal(manifest.digest, image.digest)
    assert.equal(manifest.repository, 'tools/app')
    assert.equal(manifest.hold_did, stack.hold.did)
    const layers = (image.manifest.layers as { size: number }[]).map((l) => l.size)
    const config = (image.manifest.config as { size: number }).size
    assert.equal(manifest.size, config + layers.reduce((a, b) => a + b, 0))
    assert.deepEqual(await tags(), [{ tag: 'v1', digest: image.digest }])
    const account = await db()
      .selectFrom('index_account')
      .selectAll()
      .where('did', '=', stack.alice.did)
      .executeTakeFirstOrThrow()
    assert.equal(account.pds_endpoint, stack.net.pds.url)
  })

  it('moving a tag, deleting it, and deleting the manifest update the index', async () => {
    const two = await alice.image('two')
    assert.equal((await alice.putManifest('v1', two.bytes)).status, 201)
    assert.equal((await alice.putManifest('v2', two.bytes)).status, 201)
    assert.deepEqual(await tags(), [
      { tag: 'v1', digest: two.digest },
      { tag: 'v2', digest: two.digest },
    ])
    const deleted = await alice.fetch(`/v2/${name()}/manifests/v2`, { method: 'DELETE' })
    assert.equal(deleted.status, 202)
    assert.deepEqual(await tags(), [{ tag: 'v1', digest: two.digest }])
    const gone = await alice.fetch(`/v2/${name()}/manifests/${two.digest}`, { method: 'DELETE' })
    assert.equal(gone.status, 202)
    assert.deepEqual(await tags(), [])
    const manifests = await db()
      .selectFrom('index_manifest')
      .select('digest')
      .where('did', '=', stack.alice.did)
      .execute()
    assert.ok(!manifests.some((m) => m.digest === two.digest))
  })
})
