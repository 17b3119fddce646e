// Real OCI clients (skopeo, podman, buildah, the docker CLI) against the whole registry:
// one set of scenarios, run once per hold storage driver by the registry-clients-*.test.ts
// files.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import {
  type BuiltImage,
  type ContainerStorage,
  createContainerStorage,
  createDockerCli,
  createOciLayout,
  hasCommand,
  run,
  writeAuthFile,
  writeOciImage,
} from '@atcr/testkit'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

const MiB = 1024 * 1024
const missing = ['skopeo', 'podman', 'buildah', 'docker'].filter((c) => !hasCommand(c))

async function blobsOf(layout: string): Promise<string[]> {
  return (await readdir(join(layout, 'blobs', 'sha256'))).sort()
}

async function indexOf(layout: string): Promise<{ manifests: { digest: string }[] }> {
  return JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'))
}

export function registryClientScenarios(storage: 'filesystem' | 's3'): void {
  describe(`real OCI clients, hold on ${storage}`, {
    skip: missing.length > 0 ? `missing ${missing}` : false,
  }, () => {
    let stack: RegistryStack
    let dir: string
    let creds: string
    let authFile: string
    let containers: ContainerStorage
    let image: BuiltImage
    let layout: string
    const ref = (name: string) => `docker://${stack.host}/${name}`
    const skopeo = (args: string[]) => run('skopeo', args)

    before(async () => {
      // Parts of 5 MiB, so the 12 MiB layer below goes to the hold in three parts.
      stack = await startRegistryStack({ storage, registry: { upload_part_size: 5 * MiB } })
      dir = await mkdtemp(join(tmpdir(), 'atcr-clients-'))
      creds = `${stack.alice.did}:${stack.alice.appPassword}`
      authFile = await writeAuthFile(
        join(dir, 'auth.json'),
        stack.host,
        stack.alice.did,
        stack.alice.appPassword,
      )
      containers = await createContainerStorage()
      layout = join(dir, 'layout')
      image = await writeOciImage(layout, {
        tag: 'v1',
        layers: [
          { files: [{ path: 'etc/motd', content: `pushed to a ${storage} hold\n` }] },
          { randomBytes: 12 * MiB, seed: `big-${storage}` },
        ],
      })
    })
    after(async () => {
      await containers?.close()
      await stack?.close()
      if (dir) await rm(dir, { recursive: true, force: true })
    })
    afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

    it('skopeo copies an OCI layout in and back out, by DID and by handle, digests preserved', async () => {
      const byDid = stack.nameOf(stack.alice, 'app')
      await skopeo([
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds,
        `oci:${layout}:v1`,
        `${ref(byDid)}:v1`,
      ])
      for (const name of [byDid, 'alice.test/app']) {
        const back = join(dir, `back-${name.replaceAll('/', '_')}`)
        await skopeo(['copy', '--src-tls-verify=false', `${ref(name)}:v1`, `oci:${back}:v1`])
        assert.deepEqual(await blobsOf(back), await blobsOf(layout))
        assert.equal((await indexOf(back)).manifests[0]!.digest, image.manifest.digest)
      }
      const inspect = JSON.parse(
        (await skopeo(['inspect', '--tls-verify=false', `${ref('alice.test/app')}:v1`])).stdout,
      )
      assert.equal(inspect.Digest, image.manifest.digest)
      assert.deepEqual(
        inspect.Layers,
        image.layers.map((l) => l.digest),
      )
      assert.deepEqual(inspect.RepoTags, ['v1'])
    })

    it('skopeo lists tags and deletes a manifest', async () => {
      const name = stack.nameOf(stack.alice, 'deletable')
      const other = join(dir, 'other')
      await writeOciImage(other, {
        tag: 'keep',
        layers: [{ files: [{ path: 'a', content: 'keep' }] }],
      })
      await writeOciImage(other, {
        tag: 'drop',
        layers: [{ files: [{ path: 'a', content: 'drop' }] }],
      })
      for (const tag of ['keep', 'drop']) {
        await skopeo([
          'copy',
          '--dest-tls-verify=false',
          '--dest-creds',
          creds,
          `oci:${other}:${tag}`,
          `${ref(name)}:${tag}`,
        ])
      }
      const listed = JSON.parse(
        (await skopeo(['list-tags', '--tls-verify=false', ref(name)])).stdout,
      )
      assert.deepEqual(listed.Tags, ['drop', 'keep'])
      await skopeo(['delete', '--tls-verify=false', '--creds', creds, `${ref(name)}:drop`])
      const after = JSON.parse(
        (await skopeo(['list-tags', '--tls-verify=false', ref(name)])).stdout,
      )
      assert.deepEqual(after.Tags, ['keep'])
      const gone = await run('skopeo', ['inspect', '--tls-verify=false', `${ref(name)}:drop`], {
        check: false,
      })
      assert.notEqual(gone.code, 0)
      assert.match(gone.stderr, /manifest unknown/i)
    })

    it('skopeo deletes an image from one repository only; podman search finds repositories by handle', async () => {
      const shared = join(dir, 'shared')
      await writeOciImage(shared, {
        tag: 'v1',
        layers: [{ files: [{ path: 'a', content: 'in two repositories' }] }],
      })
      const hello = `${ref('alice.test/hello')}`
      const hello2 = `${ref('alice.test/hello2')}`
      for (const destination of [`${hello}:latest`, `${hello}:podman`, `${hello2}:v1`]) {
        await skopeo([
          'copy',
          '--dest-tls-verify=false',
          '--dest-creds',
          creds,
          `oci:${shared}:v1`,
          destination,
        ])
      }
      await skopeo(['delete', '--tls-verify=false', '--creds', creds, `${hello2}:v1`])
      const kept = JSON.parse((await skopeo(['list-tags', '--tls-verify=false', hello])).stdout)
      assert.deepEqual(kept.Tags, ['latest', 'podman'])
      await skopeo(['inspect', '--tls-verify=false', `${hello}:latest`])
      const gone = await run('skopeo', ['inspect', '--tls-verify=false', `${hello2}:v1`], {
        check: false,
      })
      assert.notEqual(gone.code, 0)

      const search = await run('podman', [
        'search',
        '--tls-verify=false',
        '--authfile',
        authFile,
        '--format',
        '{{.Name}}',
        `${stack.host}/alice`,
      ])
      const found = search.stdout.split('\n').filter(Boolean)
      assert.ok(found.includes(`${stack.host}/alice.test/hello`), search.stdout)
      assert.ok(!found.includes(`${stack.host}/alice.test/hello2`), search.stdout)
    })

    it('skopeo copies a multi-platform index with --all, both platforms kept', async () => {
      const multi = join(dir, 'multi')
      const layoutMulti = await createOciLayout(multi)
      const amd = await layoutMulti.addImage({ platform: { architecture: 'amd64', os: 'linux' } })
      const arm = await layoutMulti.addImage({
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
        layers: [{ files: [{ path: 'arch', content: 'arm64' }] }],
      })
      const built = await layoutMulti.addIndex({ manifests: [amd, arm], tag: 'multi' })
      const name = stack.nameOf(stack.alice, 'multi')
      await skopeo([
        'copy',
        '--all',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds,
        `oci:${multi}:multi`,
        `${ref(name)}:latest`,
      ])
      const raw = JSON.parse(
        (await skopeo(['inspect', '--raw', '--tls-verify=false', `${ref(name)}:latest`])).stdout,
      )
      assert.equal(raw.mediaType, 'application/vnd.oci.image.index.v1+json')
      assert.deepEqual(
        raw.manifests.map((m: { digest: string; platform: { architecture: string } }) => [
          m.digest,
          m.platform.architecture,
        ]),
        [
          [amd.manifest.digest, 'amd64'],
          [arm.manifest.digest, 'arm64'],
        ],
      )
      const back = join(dir, 'multi-back')
      await skopeo([
        'copy',
        '--all',
        '--src-tls-verify=false',
        `${ref(name)}:latest`,
        `oci:${back}:latest`,
      ])
      assert.equal((await indexOf(back)).manifests[0]!.digest, built.index.digest)
      assert.deepEqual(await blobsOf(back), await blobsOf(multi))
      const arm64 = JSON.parse(
        (
          await skopeo([
            'inspect',
            '--tls-verify=false',
            '--override-arch',
            'arm64',
            '--override-variant',
            'v8',
            `${ref(name)}:latest`,
          ])
        ).stdout,
      )
      // skopeo inspect names the index's digest; the platform's own manifest shows in its layers.
      assert.equal(arm64.Architecture, 'arm64')
      assert.deepEqual(
        arm64.Layers,
        arm.layers.map((l) => l.digest),
      )
    })

    it('skopeo pushes an artifact with a subject, and the referrers API lists it', async () => {
      const art = join(dir, 'artifact')
      const artifactLayout = await createOciLayout(art)
      const subject = await artifactLayout.addImage({
        tag: 'subject',
        layers: [{ files: [{ path: 's', content: 'subject' }] }],
      })
      const signature = await artifactLayout.addArtifact({
        artifactType: 'application/vnd.example.signature.v1',
        blobs: [
          { mediaType: 'application/vnd.example.signature.v1+json', content: '{"signed":true}' },
        ],
        subject: subject.manifest,
        tag: 'sig',
      })
      const name = stack.nameOf(stack.alice, 'signed')
      for (const tag of ['subject', 'sig']) {
        await skopeo([
          'copy',
          '--dest-tls-verify=false',
          '--dest-creds',
          creds,
          `oci:${art}:${tag}`,
          `${ref(name)}:${tag}`,
        ])
      }
      const response = await stack.request(`/v2/${name}/referrers/${subject.manifest.digest}`, {
        as: null,
        scopes: [repoScope(name, 'pull')],
      })
      assert.equal(response.status, 200)
      const index = (await response.json()) as { manifests: Record<string, unknown>[] }
      assert.deepEqual(index.manifests, [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: signature.manifest.digest,
          size: signature.manifest.size,
          artifactType: 'application/vnd.example.signature.v1',
        },
      ])
    })

    it('podman pulls, tags and pushes; the pushed image pulls back', async () => {
      const source = stack.nameOf(stack.alice, 'app')
      const target = `${stack.host}/${stack.nameOf(stack.alice, 'podman')}:copy`
      await containers.podman(['pull', '--tls-verify=false', `${stack.host}/${source}:v1`])
      await containers.podman(['tag', `${stack.host}/${source}:v1`, target])
      await containers.podman(['push', '--tls-verify=false', '--authfile', authFile, target])
      await containers.podman(['rmi', target, `${stack.host}/${source}:v1`])
      await containers.podman(['pull', '--tls-verify=false', target])
      const inspect = JSON.parse((await containers.podman(['image', 'inspect', target])).stdout)
      assert.equal(inspect[0].Architecture, 'amd64')
      assert.ok(inspect[0].RepoTags.includes(target))
      const remote = JSON.parse(
        (await skopeo(['inspect', '--tls-verify=false', `docker://${target}`])).stdout,
      )
      assert.equal(remote.Layers.length, 2)
    })

    it('podman login stores credentials that push uses', async () => {
      const login = join(dir, 'podman-auth.json')
      await containers.podman([
        'login',
        '--tls-verify=false',
        '--authfile',
        login,
        '-u',
        stack.alice.did,
        '-p',
        stack.alice.appPassword,
        stack.host,
      ])
      const target = `${stack.host}/${stack.nameOf(stack.alice, 'podman')}:login`
      await containers.podman([
        'tag',
        `${stack.host}/${stack.nameOf(stack.alice, 'podman')}:copy`,
        target,
      ])
      await containers.podman(['push', '--tls-verify=false', '--authfile', login, target])
      const refused = await containers.podman(
        [
          'login',
          '--tls-verify=false',
          '--authfile',
          join(dir, 'bad.json'),
          '-u',
          stack.alice.did,
          '-p',
          'not-the-password',
          stack.host,
        ],
        { check: false },
      )
      assert.notEqual(refused.code, 0)
    })

    it('buildah commits a new layer on a pulled image and pushes it', async () => {
      const base = `${stack.host}/${stack.nameOf(stack.alice, 'app')}:v1`
      await containers.buildah(['pull', '--tls-verify=false', base])
      const container = (await containers.buildah(['from', '--pull=never', base])).stdout.trim()
      const file = join(dir, 'added.txt')
      await writeFile(file, 'added by buildah\n')
      await containers.buildah(['copy', container, file, '/added.txt'])
      const target = `${stack.host}/${stack.nameOf(stack.alice, 'buildah')}:built`
      await containers.buildah(['commit', container, target])
      await containers.buildah(['push', '--tls-verify=false', '--authfile', authFile, target])
      const remote = JSON.parse(
        (await skopeo(['inspect', '--tls-verify=false', `docker://${target}`])).stdout,
      )
      assert.equal(remote.Layers.length, 3)
      assert.deepEqual(
        remote.Layers.slice(0, 2),
        image.layers.map((l) => l.digest),
      )
    })

    it('the docker CLI logs in and inspects a manifest', async () => {
      const cli = await createDockerCli()
      try {
        await cli.docker([
          'login',
          '-u',
          stack.alice.did,
          '-p',
          stack.alice.appPassword,
          stack.host,
        ])
        const name = stack.nameOf(stack.alice, 'app')
        const manifest = JSON.parse(
          (await cli.docker(['manifest', 'inspect', '--insecure', `${stack.host}/${name}:v1`]))
            .stdout,
        )
        assert.equal(manifest.config.digest, image.config.digest)
        assert.deepEqual(
          manifest.layers.map((l: { digest: string }) => l.digest),
          image.layers.map((l) => l.digest),
        )
        const refused = await cli.docker(
          ['login', '-u', stack.alice.did, '-p', 'wrong-password', stack.host],
          { check: false },
        )
        assert.notEqual(refused.code, 0)
        assert.match(refused.stderr, /sign-in as/)
      } finally {
        await cli.close()
      }
    })

    it('keeps the hold bookkeeping: layer records for pushed manifests', async () => {
      const url = new URL('/xrpc/com.atproto.repo.listRecords', stack.hold.url)
      url.searchParams.set('repo', stack.hold.did)
      url.searchParams.set('collection', 'io.atcr.hold.layer')
      url.searchParams.set('limit', '100')
      const body = (await (await fetch(url)).json()) as {
        records: { value: { digest: string; manifest: string } }[]
      }
      const rkey = image.manifest.digest.slice('sha256:'.length)
      const ofImage = body.records.filter((r) =>
        r.value.manifest.endsWith(`/io.atcr.manifest/${rkey}`),
      )
      assert.deepEqual(
        ofImage.map((r) => r.value.digest).sort(),
        [image.config.digest, ...image.layers.map((l) => l.digest)].sort(),
      )
    })

    it('sends blob reads to presigned URLs: S3, or the hold itself on a filesystem', async () => {
      const name = stack.nameOf(stack.alice, 'app')
      const big = image.layers[1]!
      const response = await stack.request(`/v2/${name}/blobs/${big.digest}`, {
        as: null,
        scopes: [repoScope(name, 'pull')],
      })
      assert.equal(response.status, 307)
      const location = new URL(response.headers.get('location')!)
      const origin = storage === 's3' ? stack.s3!.endpoint : new URL(stack.hold.url).origin
      assert.equal(location.origin, origin)
      const bytes = Buffer.from(await (await fetch(location)).arrayBuffer())
      assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, big.digest)
    })
  })
}
