// `atcr verify` against the real stack: a pushed image verifies; a registry that serves
// other bytes, a deleted record and a commit signed by a key that is not the DID's fail,
// each with its own reason.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { makeTempDir, removeTempDir, run, writeOciImage } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { Client as PlcClient, updateAtprotoKeyOp } from '@did-plc/lib'
import { type Home, makeHome } from './cli-harness.ts'
import { type HelperStack, startHelperStack } from './stack.ts'

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/**
 * A TEST DOUBLE of a registry, because no real registry misbehaves on demand: it passes
 * every request on to the real AppView, except manifest GETs, which it answers with
 * `serve(path, upstreamBytes)` when that returns bytes (a tampering or stale registry).
 */
async function startLyingRegistry(
  upstream: string,
  serve: (path: string, bytes: Buffer | null) => Buffer | null,
): Promise<{ host: string; close(): Promise<void> }> {
  const server: Server = createServer(async (request, response) => {
    const headers = new Headers()
    for (const [key, value] of Object.entries(request.headers)) {
      if (typeof value === 'string' && key !== 'host') headers.set(key, value)
    }
    const answer = await fetch(`${upstream}${request.url}`, {
      method: request.method ?? 'GET',
      headers,
      redirect: 'manual',
    })
    let body: Buffer | null = Buffer.from(await answer.arrayBuffer())
    const isManifest = /\/manifests\/[^/]+$/.test(request.url ?? '')
    const replaced = isManifest ? serve(request.url!, answer.ok ? body : null) : null
    const out: Record<string, string> = {}
    answer.headers.forEach((value, key) => {
      if (key !== 'content-length' && key !== 'transfer-encoding' && key !== 'connection')
        out[key] = value
    })
    let status = answer.status
    if (replaced) {
      body = replaced
      status = 200
      // A lying registry names its own bytes' digest, as an honest one would.
      out['docker-content-digest'] = sha256(replaced)
      out['content-type'] ??= 'application/vnd.oci.image.manifest.v1+json'
    }
    response.writeHead(status, { ...out, 'content-length': String(body.byteLength) })
    response.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    host: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

describe('atcr verify', () => {
  let stack: HelperStack
  let home: Home
  let dir: string
  let aliceDigest: string
  let bobDigest: string
  let aliceRef: string

  const verify = (reference: string, ...more: string[]) =>
    home.atcr([
      'verify',
      '--plc-url',
      stack.net.plc.url,
      '--handle-resolver',
      stack.net.pds.url,
      ...more,
      reference,
    ])

  const push = async (account: HelperStack['alice'], repo: string, content: string) => {
    const layout = join(dir, `${repo}-${account.handle}`)
    const image = await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ files: [{ path: 'motd', content }] }],
    })
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${account.did}:${account.appPassword}`,
      `oci:${layout}:v1`,
      `docker://${stack.host}/${stack.nameOf(account)}/${repo}:v1`,
    ])
    return image.manifest.digest
  }

  before(async () => {
    stack = await startHelperStack()
    home = await makeHome()
    dir = await makeTempDir('atcr-verify-')
    aliceDigest = await push(stack.alice, 'app', 'alice was here\n')
    bobDigest = await push(stack.bob, 'tool', 'bob was here\n')
    aliceRef = `${stack.host}/${stack.nameOf(stack.alice)}/app`
  })
  after(async () => {
    await home?.close()
    await stack?.close()
    if (dir) await removeTempDir(dir)
  })

  it('passes for a pushed image, by tag, by digest and by handle, and says who published it when', async () => {
    const byTag = await verify(`${aliceRef}:v1`)
    assert.equal(byTag.code, 0, byTag.stderr)
    const lines = byTag.stdout.split('\n')
    assert.equal(lines[0], `Verified ${aliceRef}:v1`)
    assert.match(byTag.stdout, new RegExp(`digest +${aliceDigest} `))
    assert.match(
      byTag.stdout,
      new RegExp(`published +by alice\\.test \\(${stack.alice.did}\\) at \\d{4}-\\d\\d-\\d\\dT`),
    )
    assert.match(
      byTag.stdout,
      new RegExp(`record +at://${stack.alice.did}/io\\.atcr\\.manifest/${aliceDigest.slice(7)}`),
    )
    assert.match(
      byTag.stdout,
      new RegExp(`tag +v1: at://${stack.alice.did}/io\\.atcr\\.tag/app:v1`),
    )
    assert.match(byTag.stdout, /signed by +did:key:z/)

    const byDigest = await verify(`${aliceRef}@${aliceDigest}`, '--json')
    assert.equal(byDigest.code, 0, byDigest.stderr)
    const json = JSON.parse(byDigest.stdout)
    assert.equal(json.digest, aliceDigest)
    assert.equal(json.did, stack.alice.did)
    assert.equal(json.handle, 'alice.test')
    assert.equal(json.tag, undefined)
    assert.match(json.manifest.commit, /^bafy/)

    const byHandle = await verify(`${stack.host}/alice.test/app:v1`)
    assert.equal(byHandle.code, 0, byHandle.stderr)
  })

  it('fails when the registry serves other bytes (a test double registry in front of the real one)', async () => {
    const tampered = (bytes: Buffer | null) => {
      if (!bytes) return null
      const manifest = JSON.parse(bytes.toString('utf8'))
      manifest.annotations = { 'org.example.injected': 'yes' }
      return Buffer.from(JSON.stringify(manifest))
    }
    const liar = await startLyingRegistry(stack.url, (_path, bytes) => tampered(bytes))
    try {
      const ref = `${liar.host}/${stack.nameOf(stack.alice)}/app`
      const byTag = await verify(`${ref}:v1`)
      assert.equal(byTag.code, 1)
      assert.match(
        byTag.stderr,
        new RegExp(
          `^atcr: NOT verified \\(tag\\): the registry served sha256:[0-9a-f]{64} for app:v1, but the owner's signed repository tags ${aliceDigest}\\n$`,
        ),
      )
      const byDigest = await verify(`${ref}@${aliceDigest}`)
      assert.equal(byDigest.code, 1)
      assert.match(
        byDigest.stderr,
        new RegExp(
          `^atcr: NOT verified \\(digest\\): the registry served bytes whose digest is sha256:[0-9a-f]{64} when asked for ${aliceDigest}\\n$`,
        ),
      )
    } finally {
      await liar.close()
    }
  })

  it('fails when the record was deleted (a test double registry still serves the bytes it saw)', async () => {
    const digest = await push(stack.alice, 'gone', 'soon deleted\n')
    const ref = `${stack.host}/${stack.nameOf(stack.alice)}/gone@${digest}`
    assert.equal((await verify(ref)).code, 0)
    const seen = new Map<string, Buffer>()
    const stale = await startLyingRegistry(stack.url, (path, bytes) => {
      if (bytes) seen.set(path, bytes)
      return bytes ? null : (seen.get(path) ?? null)
    })
    try {
      const staleRef = `${stale.host}/${stack.nameOf(stack.alice)}/gone@${digest}`
      assert.equal((await verify(staleRef)).code, 0)
      await stack.alice.agent.com.atproto.repo.deleteRecord({
        repo: stack.alice.did,
        collection: 'io.atcr.manifest',
        rkey: digest.slice('sha256:'.length),
      })
      // The real AppView, asked directly, fails too (for whichever reason it has: it may
      // still serve the bytes, or answer that the manifest is unknown).
      const direct = await verify(ref)
      assert.equal(direct.code, 1)
      assert.match(direct.stderr, /^atcr: NOT verified \((record|registry)\): /)
      const result = await verify(staleRef)
      assert.equal(result.code, 1)
      assert.match(
        result.stderr,
        new RegExp(
          `^atcr: NOT verified \\(record\\): ${stack.alice.did} has no io\\.atcr\\.manifest record for ${digest} in its repository \\(its absence proven at signed commit bafy\\w+\\): the registry serves a manifest the owner did not publish, or the owner deleted it\\n$`,
        ),
      )
    } finally {
      await stale.close()
    }
  })

  it("fails when the commit signature does not match the DID's key", async () => {
    const ref = `${stack.host}/${stack.nameOf(stack.bob)}/tool@${bobDigest}`
    assert.equal((await verify(ref)).code, 0)
    // Point bob's DID document at a key his PDS does not hold: the PDS still signs his
    // commits with the old key, so they no longer verify against his identity.
    const plc = new PlcClient(stack.net.plc.url)
    const lastOp = await plc.getLastOp(stack.bob.did)
    if (!('rotationKeys' in lastOp) || !('verificationMethods' in lastOp)) {
      throw new Error('unexpected PLC operation')
    }
    const stranger = await Secp256k1Keypair.create()
    const rotationKey = stack.net.pds.pds.ctx.plcRotationKey
    const update = await updateAtprotoKeyOp(
      lastOp,
      rotationKey as unknown as Parameters<typeof updateAtprotoKeyOp>[1],
      stranger.did(),
    )
    await plc.sendOperation(stack.bob.did, update)
    const result = await verify(ref)
    assert.equal(result.code, 1)
    assert.match(
      result.stderr,
      new RegExp(
        `^atcr: NOT verified \\(signature\\): commit \\S+ \\(rev \\S+\\) is not signed by the key in ${stack.bob.did}'s DID document \\(${stranger.did()}\\)\\n$`,
      ),
    )
  })

  it('fails at the reference and at an identity that does not resolve', async () => {
    const bad = await verify('not a reference')
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /^atcr: NOT verified \(reference\): /)
    const nobody = await verify(`${stack.host}/did-plc-aaaaaaaaaaaaaaaaaaaaaaaa/app@${aliceDigest}`)
    assert.equal(nobody.code, 1)
    assert.match(nobody.stderr, /^atcr: NOT verified \((registry|identity)\): /)
  })
})
