// Two AppView processes on one PostgreSQL behind a real HAProxy (round-robin, every request
// balanced on its own), with a real hold, PLC and PDS: skopeo and podman push and pull
// through the balancer with their requests spread over both instances; a chunked upload
// whose PATCHes and PUT alternate instances; and one instance killed (SIGKILL) while it
// receives a layer, after which the push is retried and completes through the other.
//
// The instances share one data_dir (see docs/appview.md: the signing and sealing keys, and
// the upload spill files, which a continued upload reads on whichever instance it lands).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readlinkSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  createContainerStorage,
  freePort,
  type HoldProcess,
  hasCommand,
  hasHaproxy,
  hasPostgres,
  makeTempDir,
  removeTempDir,
  run,
  startAppViewProcess,
  startHaproxy,
  startHoldProcess,
  startNetwork,
  startPostgres,
  type TestAccount,
  type TestHaproxy,
  type TestNetwork,
  type TestPostgres,
  writeAuthFile,
  writeOciImage,
} from '@atcr/testkit'
import { clientSafeDid } from '../src/names.ts'

const MiB = 1024 * 1024
const PART = 5 * MiB

const missing = [
  ...(hasPostgres() ? [] : ['postgresql']),
  ...(hasHaproxy() ? [] : ['haproxy']),
  ...['skopeo', 'podman'].filter((c) => !hasCommand(c)),
]

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** Whether a process has a file under `dir` open (an upload's spill file). */
function hasOpenUnder(pid: number, dir: string): boolean {
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return false
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(dir)
    } catch {
      return false
    }
  })
}

describe('two AppViews on one PostgreSQL behind HAProxy', {
  skip: missing.length > 0 ? `missing ${missing.join(', ')}` : false,
}, () => {
  let net: TestNetwork
  let hold: HoldProcess
  let postgres: TestPostgres
  let alice: TestAccount
  let root: string
  let dataDir: string
  let balancer: TestHaproxy
  let host: string
  let creds: string
  const instances: AppViewProcess[] = []
  const skopeo = (args: string[]) => run('skopeo', args, { timeoutMs: 240_000 })
  const ref = (repository: string) => `docker://${host}/${clientSafeDid(alice.did)}/${repository}`

  before(async () => {
    ;[net, postgres, root] = await Promise.all([
      startNetwork(),
      startPostgres(),
      makeTempDir('atcr-cluster-'),
    ])
    alice = await net.pds.createAccount('alice.test')
    hold = await startHoldProcess({ plcUrl: net.plc.url, ownerDid: alice.did })
    const url = await postgres.createDatabase('appview')
    dataDir = join(root, 'shared')
    // Both instances answer under the balancer's name.
    const port = await freePort()
    host = `127.0.0.1:${port}`
    // One after the other: the first creates the keys in the shared data_dir.
    for (let i = 0; i < 2; i++) {
      instances.push(
        await startAppViewProcess({
          dataDir,
          plcUrl: net.plc.url,
          handleResolverUrl: net.pds.url,
          baseUrl: `http://${host}`,
          config: {
            database: { url },
            registry: { default_hold_did: hold.did, upload_part_size: PART },
          },
        }),
      )
    }
    balancer = await startHaproxy({
      port,
      checkPath: '/v2/',
      backends: instances.map((p, i) => ({ name: `appview${i + 1}`, port: p.port })),
    })
    creds = `${alice.did}:${alice.appPassword}`
  })
  after(async () => {
    await balancer?.close()
    for (const instance of instances) await instance.kill('SIGKILL')
    await hold?.close()
    await net?.close()
    await postgres?.close()
    if (root) await removeTempDir(root)
  })

  it('skopeo pushes and pulls through the balancer, its requests spread over both instances', async () => {
    const layout = join(root, 'layout')
    const image = await writeOciImage(layout, {
      tag: 'v1',
      layers: [
        { files: [{ path: 'etc/motd', content: 'balanced\n' }] },
        { randomBytes: 12 * MiB, seed: 'cluster-12' },
      ],
    })
    const before = balancer.requests().length
    await skopeo([
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `oci:${layout}:v1`,
      `${ref('app')}:v1`,
    ])
    const back = join(root, 'back')
    await skopeo(['copy', '--src-tls-verify=false', `${ref('app')}:v1`, `oci:${back}:v1`])
    assert.deepEqual(
      (await readdir(join(back, 'blobs', 'sha256'))).sort(),
      (await readdir(join(layout, 'blobs', 'sha256'))).sort(),
    )
    const inspect = JSON.parse(
      (await skopeo(['inspect', '--tls-verify=false', `${ref('app')}:v1`])).stdout,
    )
    assert.equal(inspect.Digest, image.manifest.digest)

    const served = balancer.requests().slice(before)
    const uploads = served.filter((r) => r.uri.includes('/blobs/uploads/'))
    for (const name of ['appview1', 'appview2']) {
      assert.ok(
        served.some((r) => r.server === name && r.uri.startsWith('/v2/')),
        `${name} served none of skopeo's requests`,
      )
    }
    assert.ok(new Set(uploads.map((r) => r.server)).size === 2, 'uploads went to one instance')
    assert.ok(
      served.every((r) => r.status < 500),
      served.map((r) => `${r.server} ${r.method} ${r.uri} ${r.status}`).join('\n'),
    )
  })

  it('podman pulls, pushes and pulls again through the balancer', async () => {
    const containers = await createContainerStorage()
    try {
      const authFile = await writeAuthFile(
        join(root, 'podman-auth.json'),
        host,
        alice.did,
        alice.appPassword,
      )
      const source = `${host}/${clientSafeDid(alice.did)}/app:v1`
      const target = `${host}/${clientSafeDid(alice.did)}/podman:v1`
      const before = balancer.requests().length
      await containers.podman(['pull', '--tls-verify=false', source])
      await containers.podman(['tag', source, target])
      await containers.podman(['push', '--tls-verify=false', '--authfile', authFile, target])
      await containers.podman(['rmi', target, source])
      await containers.podman(['pull', '--tls-verify=false', target])
      const inspect = JSON.parse((await containers.podman(['image', 'inspect', target])).stdout)
      assert.ok(inspect[0].RepoTags.includes(target))
      const served = balancer.requests().slice(before)
      const pushes = served.filter((r) => r.uri.includes('/podman/'))
      assert.deepEqual(
        new Set(pushes.map((r) => r.server)),
        new Set(['appview1', 'appview2']),
        'podman requests went to one instance',
      )
      assert.ok(served.every((r) => r.status < 500))
    } finally {
      await containers.close()
    }
  })

  it('continues a chunked upload on whichever instance each PATCH lands', async () => {
    const name = `${clientSafeDid(alice.did)}/chunked`
    const query = new URLSearchParams({ service: host, scope: `repository:${name}:pull,push` })
    const basic = Buffer.from(creds).toString('base64')
    const tokenAnswer = await fetch(`${balancer.url}/auth/token?${query}`, {
      headers: { authorization: `Basic ${basic}` },
    })
    const { token } = (await tokenAnswer.json()) as { token: string }
    const auth = { authorization: `Bearer ${token}` }
    const servedBy: string[] = []
    const send = async (path: string, init: RequestInit) => {
      const response = await fetch(new URL(path, balancer.url), {
        ...init,
        headers: { ...auth, ...(init.headers as Record<string, string>) },
      })
      servedBy.push(response.headers.get('x-served-by') ?? '?')
      return response
    }
    const bytes = randomBytes(3 * PART + 12_345)
    const opened = await send(`/v2/${name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(opened.status, 202)
    let location = opened.headers.get('location')!
    // Chunks that do not fall on part boundaries, so spill files carry over.
    const cuts = [0, 3 * MiB, 8 * MiB, 13 * MiB, bytes.length]
    for (let i = 0; i + 1 < cuts.length; i++) {
      const chunk = bytes.subarray(cuts[i], cuts[i + 1])
      const response = await send(location, {
        method: 'PATCH',
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${cuts[i]}-${cuts[i + 1]! - 1}`,
        },
        body: chunk,
      })
      assert.equal(response.status, 202, await response.text())
      assert.equal(response.headers.get('range'), `0-${cuts[i + 1]! - 1}`)
      location = response.headers.get('location') ?? location
    }
    const digest = sha256(bytes)
    const done = await send(`${location}?digest=${digest}`, { method: 'PUT' })
    assert.equal(done.status, 201, await done.text())
    // Round-robin: the PATCHes went to both instances.
    assert.deepEqual(new Set(servedBy.slice(1, 5)), new Set(['appview1', 'appview2']))
    for (let i = 0; i < 2; i++) {
      const blob = await send(`/v2/${name}/blobs/${digest}`, { method: 'GET' })
      assert.equal(blob.status, 200)
      assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytes))
    }
  })

  it('finishes a push through the other instance when the one receiving a layer is killed', async (t) => {
    const layout = join(root, 'layout-kill')
    await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ randomBytes: 96 * MiB, seed: 'cluster-kill' }],
    })
    const uploads = join(dataDir, 'uploads')
    const pushArgs = [
      'copy',
      '--retry-times',
      '3',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `oci:${layout}:v1`,
      `${ref('killed')}:v1`,
    ]
    const push = run('skopeo', pushArgs, { check: false, timeoutMs: 240_000 })
    let pushDone = false
    void push.then(
      () => {
        pushDone = true
      },
      () => {
        pushDone = true
      },
    )
    // The instance receiving the layer has its spill file open.
    let victim: AppViewProcess | undefined
    while (!victim && !pushDone) {
      victim = instances.find((p) => hasOpenUnder(p.pid, uploads))
      if (!victim) await new Promise((resolve) => setTimeout(resolve, 5))
    }
    assert.ok(victim, 'the push ended before any instance received the layer')
    await victim.kill('SIGKILL')
    const survivor = instances.find((p) => p !== victim)!
    t.diagnostic(`killed the instance on port ${victim.port} while it received the layer`)
    const first = await push
    if (first.code !== 0) {
      // skopeo's own retries do not cover a connection cut mid-body ("use of closed
      // network connection" is not among the errors containers/image retries), so the
      // push fails: the user's retry, the same command again, goes to the survivor.
      t.diagnostic(
        `first push failed: ${first.stderr.split('\n').find((l) => l.includes('level=fatal'))}`,
      )
      await skopeo(pushArgs)
    } else {
      t.diagnostic('skopeo retried by itself')
    }
    const back = join(root, 'back-kill')
    await skopeo(['copy', '--src-tls-verify=false', `${ref('killed')}:v1`, `oci:${back}:v1`])
    assert.deepEqual(
      (await readdir(join(back, 'blobs', 'sha256'))).sort(),
      (await readdir(join(layout, 'blobs', 'sha256'))).sort(),
    )
    const after = balancer.requests().filter((r) => r.uri.includes('/killed/'))
    assert.ok(
      after.some(
        (r) => r.server === `appview${instances.indexOf(survivor) + 1}` && r.method === 'PUT',
      ),
      'the survivor completed an upload',
    )
  })
})
