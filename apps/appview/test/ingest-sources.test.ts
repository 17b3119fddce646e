// The indexer against real firehoses: the testkit's PDS and a real hold process, consumed by
// an AppView (in this process) through @atproto/sync with every commit verified. Records
// written straight to the PDS are created, updated and deleted in the index; a record its
// lexicon refuses is skipped and counted while the next one is indexed; a restart resumes
// from the stored cursor with no gap and nothing applied twice; a push's hold records (crew,
// stats) arrive from the hold's firehose; an #identity event refreshes the handle; a
// backfill reads an account from its PDS into an index that never saw it. And a Jetstream
// source: no Jetstream package exists here (it is a Go service), so the testkit's small
// Jetstream-shaped server, fed from the same real PDS firehose, stands in for it.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { manifestRkey, NSID, tagRkey } from '@atcr/core/lexicons'
import { captureLogger } from '@atcr/core/log'
import {
  freePort,
  type HoldProcess,
  startHoldProcess,
  startJetstream,
  startNetwork,
  startTcpProxy,
  type TestAccount,
  type TestNetwork,
} from '@atcr/testkit'
import { appviewConfig } from '../src/config.ts'
import { AppView } from '../src/index.ts'
import { clientSafeDid } from '../src/names.ts'
import { Pusher, sha256 } from './registry-client.ts'
import { registryToken } from './registry-harness.ts'

const REPO = 'tools/app'
const WAIT_MS = 30_000

async function waitFor<T>(
  check: () => Promise<T | undefined | null | false>,
  what: string,
): Promise<T> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function manifestRecord(digest: string, createdAt = new Date().toISOString()) {
  return {
    $type: NSID.manifest,
    repository: REPO,
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    schemaVersion: 2,
    createdAt,
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      size: 10,
      digest: sha256(`config ${digest}`),
    },
    layers: [],
  }
}

function tagRecord(did: string, tag: string, digest: string) {
  return {
    $type: NSID.tag,
    repository: REPO,
    tag,
    manifest: `at://${did}/${NSID.manifest}/${manifestRkey(digest)}`,
    updatedAt: new Date().toISOString(),
  }
}

async function put(account: TestAccount, collection: string, rkey: string, record: object) {
  await account.agent.com.atproto.repo.putRecord({
    repo: account.did,
    collection,
    rkey,
    record: record as Record<string, unknown>,
  })
}

async function remove(account: TestAccount, collection: string, rkey: string) {
  await account.agent.com.atproto.repo.deleteRecord({ repo: account.did, collection, rkey })
}

describe('indexer on real firehoses', () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let hold: HoldProcess
  let dataDir: string
  let port: number
  let appview: AppView | null = null
  const logs = captureLogger()

  const start = async (ingest: Record<string, unknown>, dir = dataDir) => {
    const config = appviewConfig.load({
      env: {},
      overrides: {
        server: {
          data_dir: dir,
          mode: 'dev',
          host: '127.0.0.1',
          port,
          base_url: `http://127.0.0.1:${port}`,
        },
        identity: { plc_directory_url: net.plc.url, handle_resolver_url: net.pds.url },
        registry: { default_hold_did: hold.did },
        ingest: { reconnect_delay: 0, ...ingest },
      },
    })
    const view = await AppView.create(config, { logger: logs.logger })
    await view.start()
    return view
  }
  const sources = () => [
    { type: 'firehose', url: net.pds.url },
    { type: 'firehose', url: hold.url },
  ]
  const db = () => appview!.ctx.db.db
  /** The tags indexed for `did`, by this file's AppView or another one (`view`). */
  const tagsOf = (did: string, view: AppView = appview!) =>
    view.ctx.db.db
      .selectFrom('index_tag')
      .select(['tag', 'digest'])
      .where('did', '=', did)
      .orderBy('tag')
      .execute()

  before(async () => {
    net = await startNetwork()
    alice = await net.pds.createAccount('alice.test')
    bob = await net.pds.createAccount('bob.test')
    hold = await startHoldProcess({ plcUrl: net.plc.url, ownerDid: alice.did })
    dataDir = await mkdtemp(join(tmpdir(), 'atcr-ingest-'))
    port = await freePort()
    appview = await start({ enabled: true, sources: sources() })
  })

  after(async () => {
    await appview?.destroy()
    await hold?.close()
    await net?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  it("indexes the hold's captain record, replayed from the hold's first event", async () => {
    const captain = await waitFor(
      () =>
        db()
          .selectFrom('index_hold_captain')
          .selectAll()
          .where('hold_did', '=', hold.did)
          .executeTakeFirst(),
      'the captain record',
    )
    assert.equal(captain.owner_did, alice.did)
    assert.equal(captain.public, 1)
  })

  it('creates, updates and deletes what is written straight to the PDS', async () => {
    const d1 = sha256('one')
    const d2 = sha256('two')
    await put(alice, NSID.manifest, manifestRkey(d1), manifestRecord(d1))
    await put(alice, NSID.manifest, manifestRkey(d2), manifestRecord(d2))
    await put(alice, NSID.tag, tagRkey(REPO, 'latest'), tagRecord(alice.did, 'latest', d1))
    await waitFor(async () => (await tagsOf(alice.did)).length === 1, 'the tag')
    assert.deepEqual(await tagsOf(alice.did), [{ tag: 'latest', digest: d1 }])
    const manifests = await db()
      .selectFrom('index_manifest')
      .select('digest')
      .where('did', '=', alice.did)
      .orderBy('digest')
      .execute()
    assert.deepEqual(manifests.map((m) => m.digest).sort(), [d1, d2].sort())

    // An update: the tag moves.
    await put(alice, NSID.tag, tagRkey(REPO, 'latest'), tagRecord(alice.did, 'latest', d2))
    await waitFor(async () => (await tagsOf(alice.did))[0]?.digest === d2, 'the tag to move')
    // A delete.
    await remove(alice, NSID.manifest, manifestRkey(d1))
    await waitFor(
      async () =>
        !(await db()
          .selectFrom('index_manifest')
          .select('digest')
          .where('did', '=', alice.did)
          .where('digest', '=', d1)
          .executeTakeFirst()),
      'the manifest to go',
    )
    // The account was looked up: handle and PDS.
    const account = await waitFor(
      () =>
        db()
          .selectFrom('index_account')
          .selectAll()
          .where('did', '=', alice.did)
          .where('pds_endpoint', 'is not', null)
          .executeTakeFirst(),
      "alice's account",
    )
    assert.equal(account.handle, 'alice.test')
    assert.equal(account.pds_endpoint, net.pds.url)
    const [pds] = appview!.ctx.ingest.status()
    assert.ok(pds && pds.cursor !== null && pds.cursor > 0)
    assert.ok(pds.lagMs !== null && pds.lagMs >= 0)
  })

  it('skips and counts a record its lexicon refuses, and indexes the next one', async () => {
    const index = appview!.ctx.index
    const before = index.countsOf(NSID.tag).invalid
    // The PDS takes records of collections it does not know without validating them.
    await put(alice, NSID.tag, tagRkey(REPO, 'broken'), { $type: NSID.tag, tag: 'broken' })
    await put(alice, NSID.tag, tagRkey(REPO, 'after'), tagRecord(alice.did, 'after', sha256('x')))
    await waitFor(
      async () => (await tagsOf(alice.did)).some((t) => t.tag === 'after'),
      'the tag after the broken one',
    )
    assert.equal(index.countsOf(NSID.tag).invalid, before + 1)
    assert.ok(!(await tagsOf(alice.did)).some((t) => t.tag === 'broken'))
    assert.ok(appview!.ctx.ingest.consuming)
  })

  it('resumes from its cursor after a restart: nothing missed, nothing applied twice', async () => {
    await appview!.destroy()
    appview = null
    const d3 = sha256('three')
    // Written while no AppView consumes.
    await put(alice, NSID.tag, tagRkey(REPO, 'v3'), tagRecord(alice.did, 'v3', d3))
    await remove(alice, NSID.tag, tagRkey(REPO, 'after'))
    appview = await start({ enabled: true, sources: sources() })
    await waitFor(async () => {
      const tags = (await tagsOf(alice.did)).map((t) => t.tag)
      return tags.includes('v3') && !tags.includes('after')
    }, 'the changes made while stopped')
    // Only those two changes were applied: everything before the cursor was not replayed.
    assert.deepEqual(appview.ctx.index.countsOf(NSID.tag), {
      indexed: 1,
      deleted: 1,
      invalid: 0,
      ignored: 0,
    })
    assert.deepEqual(appview.ctx.index.countsOf(NSID.manifest).indexed, 0)
  })

  it("indexes a push's crew and stats records from the hold's firehose", async () => {
    const host = `127.0.0.1:${port}`
    const url = `http://${host}`
    const name = `${clientSafeDid(bob.did)}/${REPO}`
    const stack = {
      url,
      token: (account: TestAccount | null, scopes: string[]) =>
        registryToken(url, host, account, scopes),
    }
    const pusher = new Pusher(stack, bob, name)
    const image = await pusher.image('pushed')
    assert.equal((await pusher.putManifest('v1', image.bytes)).status, 201)
    const crew = await waitFor(
      () =>
        db()
          .selectFrom('index_hold_crew')
          .selectAll()
          .where('hold_did', '=', hold.did)
          .where('member_did', '=', bob.did)
          .executeTakeFirst(),
      "bob's crew record",
    )
    assert.ok(JSON.parse(crew.permissions).length > 0)
    const stats = await waitFor(
      () =>
        db()
          .selectFrom('index_repo_stats')
          .selectAll()
          .where('owner_did', '=', bob.did)
          .executeTakeFirst(),
      "the repository's stats record",
    )
    assert.equal(stats.repository, REPO)
    assert.equal(stats.push_count, 1)
  })

  it("keeps an indexed account's Bluesky display name and avatar", async () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex')
    const uploaded = await alice.agent.com.atproto.repo.uploadBlob(png, { encoding: 'image/png' })
    await put(alice, 'app.bsky.actor.profile', 'self', {
      $type: 'app.bsky.actor.profile',
      displayName: 'Alice',
      avatar: uploaded.data.blob,
    })
    const account = await waitFor(
      () =>
        db()
          .selectFrom('index_account')
          .selectAll()
          .where('did', '=', alice.did)
          .where('display_name', '=', 'Alice')
          .executeTakeFirst(),
      'the display name',
    )
    const avatar = await fetch(account.avatar_url!)
    assert.equal(avatar.status, 200)
    assert.deepEqual(Buffer.from(await avatar.arrayBuffer()), png)
  })

  it('an #identity event refreshes the handle of an indexed account', async () => {
    await alice.agent.com.atproto.identity.updateHandle({ handle: 'alice2.test' })
    await waitFor(
      () =>
        db()
          .selectFrom('index_account')
          .select('handle')
          .where('did', '=', alice.did)
          .where('handle', '=', 'alice2.test')
          .executeTakeFirst(),
      'the new handle',
    )
  })

  it('backfills one account from its PDS into an index that never saw it', async () => {
    const otherDir = await mkdtemp(join(tmpdir(), 'atcr-ingest-other-'))
    const saved = port
    port = await freePort()
    const other = await start({ enabled: false }, otherDir)
    port = saved
    try {
      const otherDb = other.ctx.db.db
      // A row the PDS does not have: the backfill removes it.
      await other.ctx.index.apply({
        did: alice.did,
        collection: NSID.tag,
        rkey: tagRkey(REPO, 'stale'),
        record: tagRecord(alice.did, 'stale', sha256('stale')),
      })
      await other.ctx.ingest.backfill(alice.did)
      const tags = await otherDb
        .selectFrom('index_tag')
        .select('tag')
        .where('did', '=', alice.did)
        .orderBy('tag')
        .execute()
      assert.deepEqual(
        tags.map((t) => t.tag),
        (await tagsOf(alice.did)).map((t) => t.tag),
      )
      assert.ok(!tags.some((t) => t.tag === 'stale'))
      const account = await otherDb
        .selectFrom('index_account')
        .selectAll()
        .where('did', '=', alice.did)
        .executeTakeFirstOrThrow()
      assert.ok(account.backfilled_at !== null && account.backfilled_at > 0)
      assert.equal(account.handle, 'alice2.test')
    } finally {
      await other.destroy()
      await rm(otherDir, { recursive: true, force: true })
    }
  })
  it('listings come from the index once an account was backfilled, from its PDS before', async () => {
    const host = `127.0.0.1:${port}`
    const url = `http://${host}`
    // An account of the PDS that never used this AppView: its records came by the firehose.
    const carol = await net.pds.createAccount('carol.test')
    const digest = sha256('carol')
    await put(carol, NSID.manifest, manifestRkey(digest), manifestRecord(digest))
    await put(carol, NSID.tag, tagRkey(REPO, 'v1'), tagRecord(carol.did, 'v1', digest))
    await waitFor(async () => (await tagsOf(carol.did)).length === 1, "carol's tag")
    const name = `${clientSafeDid(carol.did)}/${REPO}`
    const listTags = async () => {
      const token = await registryToken(url, host, null, [`repository:${name}:pull`])
      const response = await fetch(`${url}/v2/${name}/tags/list`, {
        headers: { authorization: `Bearer ${token}` },
      })
      assert.equal(response.status, 200)
      return ((await response.json()) as { tags: string[] }).tags
    }
    const ghost = (tag: string) => ({
      did: carol.did,
      collection: NSID.tag,
      rkey: tagRkey(REPO, tag),
      record: tagRecord(carol.did, tag, sha256('ghost')),
    })
    const index = appview!.ctx.index
    // A row only the index has: not listed while carol was never backfilled (the PDS answers)...
    await index.apply(ghost('ghost1'))
    assert.deepEqual(await listTags(), ['v1'])
    // ...and that listing asked for a backfill, which drops the row the PDS does not have.
    await waitFor(async () => (await index.account(carol.did))?.backfilled_at, 'the backfill')
    assert.ok(!(await tagsOf(carol.did)).some((t) => t.tag === 'ghost1'))
    assert.equal(await appview!.ctx.ingest.authoritative(carol.did), true)
    // Now the index answers: what it holds is what is listed.
    await index.apply(ghost('ghost2'))
    assert.deepEqual(await listTags(), ['ghost2', 'v1'])
    await index.apply({ ...ghost('ghost2'), record: null })
    assert.deepEqual(await listTags(), ['v1'])

    // The catalog lists the network's repositories: alice's were never pushed here.
    const token = await registryToken(url, host, bob, ['registry:catalog:*'])
    const catalog = await fetch(`${url}/v2/_catalog`, {
      headers: { authorization: `Bearer ${token}` },
    })
    const { repositories } = (await catalog.json()) as { repositories: string[] }
    assert.deepEqual(repositories, [
      `alice2.test/${REPO}`,
      `bob.test/${REPO}`,
      `carol.test/${REPO}`,
    ])
  })

  it('resumes from its cursor when the firehose connection is cut: nothing missed, nothing twice', async () => {
    const proxy = await startTcpProxy(Number(new URL(net.pds.url).port))
    const otherDir = await mkdtemp(join(tmpdir(), 'atcr-ingest-cut-'))
    const saved = port
    port = await freePort()
    const other = await start(
      { enabled: true, sources: [{ type: 'firehose', url: `http://${proxy.host}` }] },
      otherDir,
    )
    const tagsThere = async () => (await tagsOf(bob.did, other)).map((t) => t.tag)
    try {
      const digest = sha256('cut')
      await put(bob, NSID.tag, tagRkey(REPO, 'cut1'), tagRecord(bob.did, 'cut1', digest))
      await waitFor(async () => (await tagsThere()).includes('cut1'), 'cut1 through the proxy')
      const before = other.ctx.index.countsOf(NSID.tag)

      // The connection dies mid-stream and stays down while the PDS takes writes.
      proxy.cut({ refuse: true })
      await put(bob, NSID.tag, tagRkey(REPO, 'cut2'), tagRecord(bob.did, 'cut2', digest))
      await remove(bob, NSID.tag, tagRkey(REPO, 'cut1'))
      await put(bob, NSID.tag, tagRkey(REPO, 'cut3'), tagRecord(bob.did, 'cut3', digest))
      const connectionsWhileDown = proxy.connections()
      proxy.accept()
      await waitFor(async () => {
        const tags = await tagsThere()
        return tags.includes('cut2') && tags.includes('cut3') && !tags.includes('cut1')
      }, 'the changes made while the connection was down')
      assert.ok(proxy.connections() > connectionsWhileDown, 'the consumer connected again')
      const after = other.ctx.index.countsOf(NSID.tag)
      assert.equal(after.indexed - before.indexed, 2)
      assert.equal(after.deleted - before.deleted, 1)
    } finally {
      await other.destroy()
      port = saved
      await proxy.close()
      await rm(otherDir, { recursive: true, force: true })
    }
  })

  it('consumes a Jetstream source, and resumes from its time_us cursor', async () => {
    const jetstream = await startJetstream({
      upstreams: [net.pds.url.replace('http:', 'ws:')],
      plcUrl: net.plc.url,
    })
    const otherDir = await mkdtemp(join(tmpdir(), 'atcr-ingest-jetstream-'))
    const saved = port
    port = await freePort()
    const startOther = () =>
      start({ enabled: true, sources: [{ type: 'jetstream', url: jetstream.url }] }, otherDir)
    let other = await startOther()
    const tagsThere = async () => (await tagsOf(bob.did, other)).map((t) => t.tag)
    try {
      await waitFor(async () => jetstream.connections() === 1, 'the Jetstream consumer')
      // Jetstream starts live without a cursor: only what is written from now on.
      const digest = sha256('jet')
      await put(bob, NSID.tag, tagRkey(REPO, 'jet1'), tagRecord(bob.did, 'jet1', digest))
      await waitFor(async () => (await tagsThere()).includes('jet1'), 'jet1 through Jetstream')

      await other.destroy()
      await put(bob, NSID.tag, tagRkey(REPO, 'jet2'), tagRecord(bob.did, 'jet2', digest))
      await remove(bob, NSID.tag, tagRkey(REPO, 'jet1'))
      other = await startOther()
      await waitFor(async () => {
        const tags = await tagsThere()
        return tags.includes('jet2') && !tags.includes('jet1')
      }, 'the changes made while stopped')
      // The event at the cursor, which Jetstream sends again, was not applied again.
      assert.deepEqual(other.ctx.index.countsOf(NSID.tag), {
        indexed: 1,
        deleted: 1,
        invalid: 0,
        ignored: 0,
      })
      const [status] = other.ctx.ingest.status()
      assert.equal(status?.type, 'jetstream')
      assert.ok(status && status.cursor !== null && status.cursor > 0)
    } finally {
      await other.destroy()
      port = saved
      await jetstream.close()
      await rm(otherDir, { recursive: true, force: true })
    }
  })
})
