import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createIdentityResolver, type IdentityResolver } from '@atcr/core/identity'
import { NSID } from '@atcr/core/lexicons'
import { freePort } from '@atcr/testkit'
import { AtpAgent } from '@atproto/api'
import { HoldFixture } from './hold-harness.ts'

const OWNER = 'did:plc:ownerownerownerownerowne'

describe('hold identity at boot', () => {
  let fixture: HoldFixture
  let resolver: IdentityResolver

  before(async () => {
    fixture = await HoldFixture.start({ ownerDid: OWNER })
    resolver = createIdentityResolver({
      mode: 'dev',
      plcUrl: fixture.net.plc.url,
      minRefreshIntervalMs: 0,
    })
  })
  after(async () => {
    await resolver?.close()
    await fixture?.close()
  })

  it('did:web: derived from public_url, served with its key, kept across restarts', async () => {
    const dataDir = await fixture.tempDir()
    const port = await freePort()
    const first = await fixture.startHold({ dataDir, port })
    const did = first.hold.did
    assert.equal(did, `did:web:localhost%3A${port}`)
    const key = await readFile(join(dataDir, 'signing.key'), 'utf8')
    await first.stop()

    const second = await fixture.startHold({ dataDir, port })
    try {
      assert.equal(second.hold.did, did)
      assert.equal(await readFile(join(dataDir, 'signing.key'), 'utf8'), key)
      // A resolver as any client would use it finds the hold's key and services.
      const resolved = await resolver.resolveDid(did, { forceRefresh: true })
      assert.equal(resolved.signingKey, second.hold.ctx.identity.signingKey.did())
      assert.equal(resolved.pdsEndpoint, `http://localhost:${port}`)
      const wellKnown = await fetch(`${second.url}/.well-known/atproto-did`)
      assert.equal(await wellKnown.text(), did)
    } finally {
      await second.stop()
    }
  })

  it('did:web with a configured DID: the served document follows a new public_url', async () => {
    const dataDir = await fixture.tempDir()
    const did = 'did:web:hold.example.com'
    const first = await fixture.startHold({
      dataDir,
      overrides: { identity: { did } },
    })
    await first.stop()
    const port = await freePort()
    const moved = await fixture.startHold({
      dataDir,
      port,
      overrides: { identity: { did }, server: { public_url: `http://127.0.0.1:${port}` } },
    })
    try {
      const doc = (await (await fetch(`${moved.url}/.well-known/did.json`)).json()) as {
        id: string
        service: { id: string; serviceEndpoint: string }[]
      }
      assert.equal(doc.id, did)
      assert.deepEqual(
        doc.service.map((s) => [s.id, s.serviceEndpoint]),
        [
          ['#atproto_pds', `http://127.0.0.1:${port}`],
          ['#atcr_hold', `http://127.0.0.1:${port}`],
        ],
      )
    } finally {
      await moved.stop()
    }
  })

  it('did:plc: created once, kept in did.txt, and the PLC document follows a new URL', async () => {
    const dataDir = await fixture.tempDir()
    const plcIdentity = {
      did_method: 'plc' as const,
      rotation_key_path: join(dataDir, 'rotation.key'),
    }
    const first = await fixture.startHold({
      dataDir,
      overrides: { identity: plcIdentity },
    })
    const did = first.hold.did
    assert.match(did, /^did:plc:[a-z2-7]{24}$/)
    assert.equal((await readFile(join(dataDir, 'did.txt'), 'utf8')).trim(), did)
    const created = await resolver.resolveDid(did, { forceRefresh: true })
    assert.equal(created.pdsEndpoint, first.url)
    assert.equal(created.signingKey, first.hold.ctx.identity.signingKey.did())
    await first.stop()

    const port = await freePort()
    const moved = await fixture.startHold({
      dataDir,
      port,
      overrides: { identity: plcIdentity },
    })
    try {
      assert.equal(moved.hold.did, did, 'same DID after restart')
      const updated = await resolver.resolveDid(did, { forceRefresh: true })
      assert.equal(updated.pdsEndpoint, `http://localhost:${port}`)
    } finally {
      await moved.stop()
    }
  })

  it('did:plc without a rotation key path refuses to create the DID', async () => {
    await assert.rejects(
      fixture.startHold({
        overrides: { identity: { did_method: 'plc' } },
      }),
      /identity.rotation_key_path/,
    )
  })

  it('writes the captain, owner crew and profile once, and updates the captain on new config', async () => {
    const dataDir = await fixture.tempDir()
    const port = await freePort()
    const opts = { dataDir, port }
    const first = await fixture.startHold({
      ...opts,
      overrides: { registration: { region: 'eu-west' } },
    })
    const agent = new AtpAgent({ service: first.url })
    const did = first.hold.did
    const captain = await agent.com.atproto.repo.getRecord({
      repo: did,
      collection: NSID.holdCaptain,
      rkey: 'self',
    })
    assert.deepEqual(
      { ...(captain.data.value as object), deployedAt: undefined },
      {
        $type: NSID.holdCaptain,
        owner: OWNER,
        public: false,
        allowAllCrew: false,
        enableBlueskyPosts: false,
        region: 'eu-west',
        deployedAt: undefined,
      },
    )
    const head = await first.hold.ctx.repo.reader.getHead()
    await first.stop()

    // Same config: nothing is written again.
    const same = await fixture.startHold({
      ...opts,
      overrides: { registration: { region: 'eu-west' } },
    })
    assert.deepEqual(await same.hold.ctx.repo.reader.getHead(), head)
    await same.stop()

    const changed = await fixture.startHold({
      ...opts,
      overrides: { registration: { region: 'eu-west', public: true, allow_all_crew: true } },
    })
    try {
      const sameAgent = new AtpAgent({ service: changed.url })
      const updated = await sameAgent.com.atproto.repo.getRecord({
        repo: did,
        collection: NSID.holdCaptain,
        rkey: 'self',
      })
      const value = updated.data.value as {
        public: boolean
        allowAllCrew: boolean
        deployedAt: string
      }
      assert.equal(value.public, true)
      assert.equal(value.allowAllCrew, true)
      assert.equal(value.deployedAt, (captain.data.value as { deployedAt: string }).deployedAt)
      const crew = await sameAgent.com.atproto.repo.listRecords({
        repo: did,
        collection: NSID.holdCrew,
      })
      assert.equal(crew.data.records.length, 1, 'the owner has exactly one crew record')
      assert.deepEqual(
        crew.data.records.map((r) => (r.value as { member: string }).member),
        [OWNER],
      )
      const profile = await sameAgent.com.atproto.repo.listRecords({
        repo: did,
        collection: 'app.bsky.actor.profile',
      })
      assert.equal(profile.data.records.length, 1)
    } finally {
      await changed.stop()
    }

    // Flags left unset keep what the record says (as the admin pages wrote it); set, they win.
    const unset = await fixture.startHold({
      ...opts,
      overrides: { registration: { region: 'eu-west' } },
    })
    type Flags = { public: boolean; allowAllCrew: boolean } | undefined
    const kept = (await unset.hold.ctx.repo.reader.getRecord(NSID.holdCaptain, 'self'))
      ?.value as Flags
    await unset.stop()
    assert.equal(kept?.public, true)
    assert.equal(kept?.allowAllCrew, true)
    const closed = await fixture.startHold({
      ...opts,
      overrides: { registration: { region: 'eu-west', allow_all_crew: false } },
    })
    const reopened = (await closed.hold.ctx.repo.reader.getRecord(NSID.holdCaptain, 'self'))
      ?.value as Flags
    await closed.stop()
    assert.equal(reopened?.public, true)
    assert.equal(reopened?.allowAllCrew, false)
  })

  it('a stock AT Protocol client reads the hold repo', async () => {
    const running = await fixture.startHold()
    try {
      const agent = new AtpAgent({ service: running.url })
      const repo = await agent.com.atproto.repo.describeRepo({ repo: running.hold.did })
      assert.equal(repo.data.did, running.hold.did)
      // The handle is the public URL's host; `localhost` is no valid atproto handle.
      assert.equal(repo.data.handle, 'handle.invalid')
      assert.ok(repo.data.collections.includes(NSID.holdCaptain))
      assert.ok(repo.data.collections.includes(NSID.holdCrew))
      const listed = await agent.com.atproto.repo.listRecords({
        repo: running.hold.did,
        collection: NSID.holdCaptain,
      })
      assert.deepEqual(
        listed.data.records.map((r) => r.uri),
        [`at://${running.hold.did}/${NSID.holdCaptain}/self`],
      )
    } finally {
      await running.stop()
    }
  })
})
