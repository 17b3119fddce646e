// Which hold a push goes to and who may use it: the sailor profile's defaultHold, crew
// admission (allowAllCrew, requestCrew), private holds read with the caller's service
// token, and an upload the hold refuses for quota. Real PLC, PDS, holds and AppView.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { type HoldProcess, startHoldProcess, type TestAccount } from '@atcr/testkit'
import { errorCode, Pusher, pulledBlob, sha256 } from './registry-client.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

async function setDefaultHold(account: TestAccount, holdDid: string): Promise<void> {
  await account.agent.com.atproto.repo.putRecord({
    repo: account.did,
    collection: 'io.atcr.sailor.profile',
    rkey: 'self',
    record: {
      $type: 'io.atcr.sailor.profile',
      createdAt: new Date().toISOString(),
      defaultHold: holdDid,
    },
  })
}

async function holdRecords(hold: HoldProcess, collection: string) {
  const url = new URL('/xrpc/com.atproto.repo.listRecords', hold.url)
  url.searchParams.set('repo', hold.did)
  url.searchParams.set('collection', collection)
  url.searchParams.set('limit', '100')
  const body = (await (await fetch(url)).json()) as {
    records: { value: Record<string, unknown> }[]
  }
  return body.records.map((r) => r.value)
}

describe('hold selection, crew and private holds', () => {
  let stack: RegistryStack
  let openHold: HoldProcess
  let privateHold: HoldProcess
  let tinyHold: HoldProcess
  const extraHolds: HoldProcess[] = []

  before(async () => {
    // The AppView's default hold admits no one but its captain (alice).
    stack = await startRegistryStack({ allowAllCrew: false })
    const plcUrl = stack.net.plc.url
    openHold = await startHoldProcess({ plcUrl, ownerDid: stack.alice.did, allowAllCrew: true })
    privateHold = await startHoldProcess({
      plcUrl,
      ownerDid: stack.alice.did,
      public: false,
      allowAllCrew: false,
    })
    tinyHold = await startHoldProcess({
      plcUrl,
      ownerDid: stack.alice.did,
      allowAllCrew: true,
      config: { quota: { tiers: [{ name: 'dinghy', limit: 1000 }] } },
    })
    extraHolds.push(openHold, privateHold, tinyHold)
  })
  after(async () => {
    for (const hold of extraHolds) await hold.close()
    await stack?.close()
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it('refuses a push to a hold whose captain admits no new crew', async () => {
    const bob = new Pusher(stack, stack.bob, stack.nameOf(stack.bob, 'app'))
    const response = await bob.fetch(`/v2/${bob.name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(response.status, 403)
    const body = (await response.json()) as { errors: { code: string; message: string }[] }
    assert.equal(body.errors[0]!.code, 'DENIED')
    assert.match(body.errors[0]!.message, /not in the crew/)
  })

  it("pushes to the profile's defaultHold, joining its crew when the captain allows all; 503 once it is gone", async () => {
    const carol = await stack.net.pds.createAccount('carol.test')
    await setDefaultHold(carol, openHold.did)
    const pusher = new Pusher(stack, carol, stack.nameOf(carol, 'app'))
    const image = await pusher.image('on the open hold')
    const put = await pusher.putManifest('v1', image.bytes)
    assert.equal(put.status, 201, await put.clone().text())

    const crew = await holdRecords(openHold, 'io.atcr.hold.crew')
    assert.ok(
      crew.some((member) => member.member === carol.did),
      JSON.stringify(crew),
    )
    const record = await carol.agent.com.atproto.repo.getRecord({
      repo: carol.did,
      collection: 'io.atcr.manifest',
      rkey: image.digest.slice('sha256:'.length),
    })
    assert.equal((record.data.value as { holdDid?: string }).holdDid, openHold.did)
    // The default hold never saw these blobs: the pull finds them on the manifest's hold.
    const layer = (image.manifest.layers as { digest: string }[])[0]!.digest
    const blob = await stack.request(`/v2/${pusher.name}/blobs/${layer}`, {
      as: null,
      scopes: [repoScope(pusher.name, 'pull')],
    })
    assert.equal((await pulledBlob(blob)).toString(), 'layer of on the open hold')

    // The hold goes away: its blobs are unavailable (503), not unknown (404).
    await openHold.close()
    const gone = await stack.request(`/v2/${pusher.name}/blobs/${layer}`, {
      as: null,
      scopes: [repoScope(pusher.name, 'pull')],
    })
    assert.equal(gone.status, 503)
    assert.equal(await errorCode(gone), 'UNAVAILABLE')
    // The manifest lives in carol's PDS and is still served.
    const manifest = await stack.request(`/v2/${pusher.name}/manifests/v1`, {
      as: null,
      scopes: [repoScope(pusher.name, 'pull')],
    })
    assert.equal(manifest.status, 200)
  })

  it('reads blobs of a private hold with the caller service token; anonymous callers must sign in', async () => {
    const dave = await stack.net.pds.createAccount('dave.test')
    await setDefaultHold(dave, privateHold.did)
    // dave may push only once the captain made him crew: refused first.
    const pusher = new Pusher(stack, dave, stack.nameOf(dave, 'secret'))
    const refused = await pusher.fetch(`/v2/${pusher.name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(refused.status, 403)

    // alice is the private hold's captain: her pushes and reads pass.
    await setDefaultHold(stack.alice, privateHold.did)
    const alice = new Pusher(stack, stack.alice, stack.nameOf(stack.alice, 'secret'))
    const content = randomBytes(2048)
    const { digest } = await alice.blob(content)
    const mine = await alice.fetch(`/v2/${alice.name}/blobs/${digest}`)
    assert.equal(mine.status, 200)
    assert.ok(Buffer.from(await mine.arrayBuffer()).equals(content))

    const anonymous = await stack.request(`/v2/${alice.name}/blobs/${digest}`, {
      as: null,
      scopes: [repoScope(alice.name, 'pull')],
    })
    assert.equal(anonymous.status, 401)
    assert.equal(await errorCode(anonymous), 'UNAUTHORIZED')
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm=/)

    // A private hold serves any signed-in account (captain.public only says "anonymous
    // too"): bob's own service token, minted by his PDS, is what gets him in.
    const bob = await stack.request(`/v2/${alice.name}/blobs/${digest}`, {
      as: stack.bob,
      scopes: [repoScope(alice.name, 'pull')],
    })
    assert.ok((await pulledBlob(bob)).equals(content))
  })

  it('refuses the upload of a blob past the quota: no tag, no manifest left', async () => {
    const erin = await stack.net.pds.createAccount('erin.test')
    await setDefaultHold(erin, tinyHold.did)
    const pusher = new Pusher(stack, erin, stack.nameOf(erin, 'big'))
    const config = await pusher.blob('{}')
    // The hold counts uploads against the quota as they arrive: 4000 bytes do not get in.
    const bytes = randomBytes(4000)
    const refused = await pusher.fetch(
      `/v2/${pusher.name}/blobs/uploads/?digest=${sha256(bytes)}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: bytes,
      },
    )
    assert.equal(refused.status, 403)
    const error = (await refused.json()) as { errors: { code: string; message: string }[] }
    assert.equal(error.errors[0]!.code, 'DENIED')
    assert.match(error.errors[0]!.message, /QuotaExceeded/)
    assert.match(error.errors[0]!.message, /dinghy tier allows 1000 bytes/)
    // A manifest naming it is refused too, and leaves nothing behind.
    const layer = { digest: sha256(bytes), size: bytes.length }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    )
    const put = await pusher.putManifest('latest', manifest)
    assert.equal(put.status, 400, await put.clone().text())
    assert.equal(await errorCode(put), 'MANIFEST_BLOB_UNKNOWN')
    assert.equal((await pusher.fetch(`/v2/${pusher.name}/manifests/latest`)).status, 404)
    const records = await erin.agent.com.atproto.repo.listRecords({
      repo: erin.did,
      collection: 'io.atcr.manifest',
    })
    assert.deepEqual(records.data.records, [])
    const tags = await erin.agent.com.atproto.repo.listRecords({
      repo: erin.did,
      collection: 'io.atcr.tag',
    })
    assert.deepEqual(tags.data.records, [])
  })
})
