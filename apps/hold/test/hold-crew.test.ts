import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { NSID } from '@atcr/core/lexicons'
import type { TestAccount } from '@atcr/testkit'
import { addCrew, CrewError, removeCrew, updateCrew } from '../src/crew/index.ts'
import { blobPath } from '../src/storage/index.ts'
import { digestOf, imageManifest, pushInput, putBlob } from './hold-data.ts'
import { HoldFixture, type TestHold } from './hold-harness.ts'
import { procedure, query } from './hold-xrpc.ts'

const TIERS = [
  { name: 'deckhand', limit: 10_000, description: '' },
  { name: 'bosun', limit: 100_000, description: '' },
]

describe('crew membership and user data', () => {
  let fixture: HoldFixture
  let openHold: TestHold
  let closedHold: TestHold
  let owner: TestAccount
  let alice: TestAccount
  let bob: TestAccount

  before(async () => {
    const started = await HoldFixture.start({
      accounts: ['crew-captain.test', 'alice.test', 'bob.test'],
    })
    fixture = started
    ;[owner, alice, bob] = started.accounts
    openHold = await fixture.startHold({ allowAllCrew: true, tiers: TIERS, defaultTier: 'bosun' })
    closedHold = await fixture.startHold()
  })

  after(() => fixture?.close())

  async function crewOf(hold: TestHold) {
    return hold.ctx.repo.reader.listRecords({ collection: NSID.holdCrew, limit: 100 })
  }

  it('a closed hold refuses newcomers (RegistrationDisabled); its owner is already aboard', async () => {
    const refused = await procedure(closedHold, NSID.holdRequestCrew, alice)
    assert.equal(refused.status, 403)
    assert.equal(refused.body.error, 'RegistrationDisabled')
    assert.equal((await crewOf(closedHold)).length, 1)

    const ownerAgain = await procedure(closedHold, NSID.holdRequestCrew, owner)
    assert.equal(ownerAgain.status, 200, JSON.stringify(ownerAgain.body))
    assert.equal(ownerAgain.body.status, 'already_member')
    assert.equal(ownerAgain.body.uri, (await crewOf(closedHold))[0]?.uri)
  })

  it('an open hold admits any signed-in account with read/write and the default tier', async () => {
    const res = await procedure(openHold, NSID.holdRequestCrew, alice)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.status, 'created')
    const record = (await crewOf(openHold)).find((r) => r.value.member === alice.did)
    assert.ok(record)
    assert.equal(res.body.uri, record.uri)
    assert.equal(res.body.cid, record.cid)
    assert.equal(record.value.role, 'member')
    assert.deepEqual(record.value.permissions, ['blob:read', 'blob:write'])
    assert.equal(record.value.tier, 'bosun')
    assert.equal(typeof record.value.addedAt, 'string')

    const again = await procedure(openHold, NSID.holdRequestCrew, alice)
    assert.equal(again.status, 200)
    assert.equal(again.body.status, 'already_member')
    assert.equal(again.body.uri, record.uri)
    assert.equal((await crewOf(openHold)).filter((r) => r.value.member === alice.did).length, 1)
  })

  it('self-registration cannot grant admin powers, and needs a sign-in', async () => {
    const asAdmin = await procedure(openHold, NSID.holdRequestCrew, bob, { role: 'admin' })
    assert.equal(asAdmin.status, 400)
    const withCrewAdmin = await procedure(openHold, NSID.holdRequestCrew, bob, {
      permissions: ['blob:read', 'crew:admin'],
    })
    assert.equal(withCrewAdmin.status, 400)
    assert.match(String(withCrewAdmin.body.message), /crew:admin/)
    const anonymous = await procedure(openHold, NSID.holdRequestCrew, null)
    assert.equal(anonymous.status, 401)
    assert.equal((await crewOf(openHold)).filter((r) => r.value.member === bob.did).length, 0)

    const readOnly = await procedure(openHold, NSID.holdRequestCrew, bob, {
      role: 'read',
      permissions: ['blob:read'],
    })
    assert.equal(readOnly.status, 200)
    const record = (await crewOf(openHold)).find((r) => r.value.member === bob.did)
    assert.equal(record?.value.role, 'read')
    assert.deepEqual(record?.value.permissions, ['blob:read'])
    // Read-only crew cannot push.
    const push = await procedure(
      openHold,
      NSID.holdNotifyManifest,
      bob,
      pushInput(
        bob.did,
        'app',
        digestOf('bob m'),
        imageManifest([], { digest: digestOf('c'), size: 1 }),
      ),
    )
    assert.equal(push.status, 403)
  })

  it('updateCrew and removeCrew change members, never the owner', async () => {
    const ctx = openHold.ctx
    const carol = 'did:plc:carolcarolcarolcarolcaro'
    const added = await addCrew(ctx, { member: carol, role: 'write', permissions: ['blob:write'] })
    assert.equal(added.status, 'created')
    assert.equal(added.entry.value.tier, 'bosun')
    const updated = await updateCrew(ctx, carol, { tier: 'deckhand', permissions: ['blob:read'] })
    assert.equal(updated.value.tier, 'deckhand')
    assert.deepEqual(updated.value.permissions, ['blob:read'])
    const reverted = await updateCrew(ctx, carol, { tier: null })
    assert.equal(reverted.value.tier, undefined)
    await assert.rejects(updateCrew(ctx, carol, { tier: 'admiral' }), (err: CrewError) => {
      return err.code === 'UnknownTier'
    })
    await removeCrew(ctx, carol)
    assert.equal((await crewOf(openHold)).filter((r) => r.value.member === carol).length, 0)
    await assert.rejects(removeCrew(ctx, carol), (err: CrewError) => err.code === 'MemberNotFound')
    await assert.rejects(removeCrew(ctx, owner.did), (err: CrewError) => {
      return err.code === 'OwnerProtected'
    })
    await assert.rejects(updateCrew(ctx, owner.did, { role: 'write' }), CrewError)
  })

  it('exportUserData returns the caller’s crew, layer and stats records', async () => {
    const config = { digest: digestOf('export config'), size: 10 }
    const layer = { digest: digestOf('export layer'), size: 500 }
    await putBlob(openHold.ctx, layer.digest, new Uint8Array(500))
    await putBlob(openHold.ctx, config.digest, new Uint8Array(10))
    for (const [repository, name] of [
      ['app', 'export m1'],
      ['tools/cli', 'export m2'],
    ] as const) {
      const res = await procedure(
        openHold,
        NSID.holdNotifyManifest,
        alice,
        pushInput(alice.did, repository, digestOf(name), imageManifest([layer], config)),
      )
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }
    await procedure(openHold, NSID.holdNotifyManifest, alice, {
      ...pushInput(alice.did, 'app', digestOf('export m1'), imageManifest([layer], config)),
      operation: 'pull',
    })

    const { status, body } = await query(openHold, NSID.holdExportUserData, alice)
    assert.equal(status, 200, JSON.stringify(body))
    assert.equal(body.userDid, alice.did)
    assert.equal(body.holdDid, openHold.did)
    assert.equal(body.isCaptain, false)
    assert.deepEqual(body.blueskyPosts, [])
    const crew = body.crewRecord as Record<string, unknown>
    assert.equal(crew.role, 'member')
    assert.equal(crew.tier, 'bosun')
    const layers = body.layerRecords as Record<string, unknown>[]
    assert.equal(layers.length, 4)
    assert.ok(layers.every((l) => l.manifest?.toString().startsWith(`at://${alice.did}/`)))
    const stats = body.statsRecords as Record<string, unknown>[]
    assert.deepEqual(stats.map((s) => [s.repository, s.pushCount, s.pullCount]).sort(), [
      ['app', 1, 1],
      ['tools/cli', 1, 0],
    ])

    const ownerExport = await query(openHold, NSID.holdExportUserData, owner)
    assert.equal(ownerExport.body.isCaptain, true)
    assert.deepEqual(ownerExport.body.layerRecords, [])
    assert.equal((await query(openHold, NSID.holdExportUserData, null)).status, 401)
  })

  it('deleteUserData erases the caller’s records in one commit, not the blobs', async () => {
    const ctx = openHold.ctx
    const lastEvent = async () =>
      (
        await ctx.db.db
          .selectFrom('repo_seq')
          .select('seq')
          .orderBy('seq', 'desc')
          .limit(1)
          .executeTakeFirst()
      )?.seq ?? 0
    const eventsBefore = await lastEvent()
    const bobCrewBefore = (await crewOf(openHold)).filter((r) => r.value.member === bob.did)

    const res = await procedure(openHold, NSID.holdDeleteUserData, alice)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(res.body, {
      success: true,
      crewDeleted: true,
      layersDeleted: 4,
      statsDeleted: 2,
    })
    // One commit: one firehose event.
    assert.equal(await lastEvent(), eventsBefore + 1)

    const exported = await query(openHold, NSID.holdExportUserData, alice)
    assert.equal(exported.body.crewRecord, undefined)
    assert.deepEqual(exported.body.layerRecords, [])
    assert.deepEqual(exported.body.statsRecords, [])
    // Others keep theirs; the blob bytes stay.
    assert.deepEqual(
      (await crewOf(openHold)).filter((r) => r.value.member === bob.did),
      bobCrewBefore,
    )
    assert.ok(await ctx.storage.stat(blobPath('sha256', digestOf('export layer').slice(7))))
    // Without a crew record alice can no longer push.
    const push = await procedure(
      openHold,
      NSID.holdNotifyManifest,
      alice,
      pushInput(
        alice.did,
        'app',
        digestOf('after'),
        imageManifest([], { digest: digestOf('c'), size: 1 }),
      ),
    )
    assert.equal(push.status, 403)
  })

  it('the captain keeps their crew record when deleting their data', async () => {
    await putBlob(openHold.ctx, digestOf('oc'), new Uint8Array(3))
    await procedure(
      openHold,
      NSID.holdNotifyManifest,
      owner,
      pushInput(
        owner.did,
        'own',
        digestOf('owner m'),
        imageManifest([], { digest: digestOf('oc'), size: 3 }),
      ),
    )
    const res = await procedure(openHold, NSID.holdDeleteUserData, owner)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.deepEqual(res.body, {
      success: true,
      crewDeleted: false,
      layersDeleted: 1,
      statsDeleted: 1,
    })
    assert.equal((await crewOf(openHold)).filter((r) => r.value.member === owner.did).length, 1)
  })
})
