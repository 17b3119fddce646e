// deploy/ for real, opt-in (ATCR_DEPLOY_TEST=1; .ci/run runs it as its own step): a Debian
// base image with Node made from Debian packages (mmdebstrap, cached in
// /var/cache/atcr-deploy) and the running Node, both Dockerfiles built with buildah, each
// image's entrypoint run with `buildah run --isolation chroot` (this machine refuses
// `podman run`) against a real PLC and PDS, an image pushed and pulled through them, the
// HEALTHCHECK and the non-root user checked, and compose.yaml validated by podman-compose.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { access, chmod, chown, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  freePort,
  makeTempDir,
  removeTempDir,
  run,
  startNetwork,
  type TestAccount,
  type TestNetwork,
  writeOciImage,
} from '@atcr/testkit'

const root = new URL('..', import.meta.url).pathname
const enabled = process.env.ATCR_DEPLOY_TEST === '1'
const CACHE = '/var/cache/atcr-deploy'
const BASE = 'localhost/atcr-node-base:test'
const BUILD_TIMEOUT = 30 * 60_000
const APP_UID = '10001'
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

async function sh(command: string, args: string[], timeoutMs = BUILD_TIMEOUT): Promise<string> {
  const result = await run(command, args, { timeoutMs })
  return result.stdout.trim()
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  )

/**
 * A Debian bookworm minbase (mmdebstrap, from Debian's packages; the tarball is kept in
 * /var/cache/atcr-deploy) with this Node in /usr/local (binary, headers) and npm from the
 * npm registry: what the official node image offers, made here. It trusts the host's CA
 * bundle.
 */
async function ensureBaseImage(): Promise<void> {
  if ((await sh('buildah', ['images', '--quiet', BASE]).catch(() => '')) !== '') return
  const rootfs = join(CACHE, 'debian-bookworm-minbase.tar')
  await mkdir(CACHE, { recursive: true })
  if (!(await exists(rootfs))) {
    await sh('mmdebstrap', [
      '--variant=minbase',
      '--include=ca-certificates',
      '--format=tar',
      'bookworm',
      `${rootfs}.part`,
    ])
    await rename(`${rootfs}.part`, rootfs)
  }
  const work = await makeTempDir('atcr-base-')
  try {
    await sh('npm', ['pack', '--silent', '--pack-destination', work, 'npm@11'])
    const tarball = (await sh('sh', ['-c', `ls ${work}/npm-*.tgz`])).split('\n')[0]!
    await mkdir(join(work, 'npm'))
    await sh('tar', ['-xzf', tarball, '-C', join(work, 'npm'), '--strip-components=1'])
    const nodeHome = dirname(dirname(process.execPath))
    const ctr = await sh('buildah', ['from', 'scratch'])
    try {
      await sh('buildah', ['add', ctr, rootfs, '/'])
      await sh('buildah', ['copy', ctr, process.execPath, '/usr/local/bin/node'])
      if (await exists(join(nodeHome, 'include', 'node'))) {
        await sh('buildah', [
          'copy',
          ctr,
          join(nodeHome, 'include', 'node'),
          '/usr/local/include/node',
        ])
      }
      await sh('buildah', ['copy', ctr, join(work, 'npm'), '/usr/local/lib/node_modules/npm'])
      await sh('buildah', [
        'run',
        '--isolation',
        'chroot',
        ctr,
        '--',
        'ln',
        '-s',
        '../lib/node_modules/npm/bin/npm-cli.js',
        '/usr/local/bin/npm',
      ])
      // This machine reaches the npm registry through its own TLS authority: the base trusts
      // what the host trusts, as a base image built inside an organisation would.
      await sh('buildah', ['copy', ctr, HOST_CA_BUNDLE, HOST_CA_BUNDLE])
      await sh('buildah', [
        'config',
        '--env',
        'npm_config_nodedir=/usr/local',
        '--env',
        `NODE_EXTRA_CA_CERTS=${HOST_CA_BUNDLE}`,
        ctr,
      ])
      await sh('buildah', ['commit', '--quiet', ctr, BASE])
    } finally {
      await sh('buildah', ['rm', ctr]).catch(() => {})
    }
  } finally {
    await removeTempDir(work)
  }
}

async function build(app: 'hold' | 'appview'): Promise<string> {
  const tag = `localhost/atcr-${app}:test`
  await sh('buildah', [
    'build',
    '--isolation',
    'chroot',
    '--format',
    'docker',
    '--layers',
    '--quiet',
    '--build-arg',
    `BASE_IMAGE=${BASE}`,
    '-f',
    join(root, 'deploy', app, 'Dockerfile'),
    '-t',
    tag,
    root,
  ])
  return tag
}

interface ImageConfig {
  Entrypoint: string[]
  Cmd: string[]
  User: string
  Healthcheck?: { Test: string[] }
}

async function imageConfig(tag: string): Promise<ImageConfig> {
  const text = await sh('buildah', ['inspect', '--type', 'image', tag])
  return (JSON.parse(text) as { Docker: { config: ImageConfig } }).Docker.config
}

/** A working container of `image`, its entrypoint started with `buildah run`. */
class Container {
  readonly id: string
  process: ChildProcess | undefined
  output = ''

  private constructor(id: string) {
    this.id = id
  }

  static async from(image: string): Promise<Container> {
    return new Container(await sh('buildah', ['from', '--pull-never', image]))
  }

  start(command: string[], volumes: string[]): void {
    const child = spawn(
      'buildah',
      [
        'run',
        '--isolation',
        'chroot',
        ...volumes.flatMap((v) => ['-v', v]),
        this.id,
        '--',
        ...command,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    )
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-64 * 1024)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    this.process = child
  }

  exec(command: string[]): Promise<string> {
    return sh('buildah', ['run', '--isolation', 'chroot', this.id, '--', ...command], 120_000)
  }

  async remove(): Promise<void> {
    const child = this.process
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      process.kill(-child.pid, 'SIGTERM')
      const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 20_000)
      await exited
      clearTimeout(timer)
    }
    await sh('buildah', ['rm', this.id]).catch(() => {})
  }
}

async function untilReady(url: string, container: Container): Promise<void> {
  const deadline = Date.now() + 120_000
  for (;;) {
    const status = await fetch(url).then(
      (r) => r.status,
      () => 0,
    )
    if (status === 200) return
    if (container.process?.exitCode !== null || Date.now() > deadline) {
      throw new Error(`${url} not ready:\n${container.output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

describe('deploy/ images and compose', { skip: !enabled && 'set ATCR_DEPLOY_TEST=1' }, () => {
  let dir: string
  let network: TestNetwork
  let account: TestAccount
  const images: Record<string, string> = {}
  const containers: Container[] = []
  let hold: Container
  let appview: Container
  let registry: string
  let holdPort: number
  let appviewPort: number

  before(async () => {
    dir = await makeTempDir('atcr-deploy-')
    await ensureBaseImage()
    images.hold = await build('hold')
    images.appview = await build('appview')
    network = await startNetwork()
    account = await network.pds.createAccount('deploy.test')
  })
  after(async () => {
    for (const container of containers) await container.remove()
    await network?.close()
    await removeTempDir(dir)
  })

  it('have a HEALTHCHECK on their own /healthz and run as a non-root user', async () => {
    for (const app of ['hold', 'appview']) {
      const config = await imageConfig(images[app]!)
      assert.equal(config.User, 'atcr')
      assert.match(config.Healthcheck?.Test.join(' ') ?? '', /\/healthz/)
      assert.match(config.Entrypoint[0]!, new RegExp(`/opt/atcr/apps/${app}/bin/atcr-${app}$`))
    }
  })

  it('start from their entrypoints; an image is pushed and pulled through them', async () => {
    holdPort = await freePort()
    appviewPort = await freePort()
    const holdUrl = `http://localhost:${holdPort}`
    for (const app of ['hold', 'appview']) {
      await mkdir(join(dir, app, 'etc'), { recursive: true })
      await mkdir(join(dir, app, 'data'), { recursive: true })
      // The image's user owns its data volume, as an operator would arrange.
      await chown(join(dir, app, 'data'), Number(APP_UID), Number(APP_UID))
      await chmod(join(dir, app, 'etc'), 0o755)
    }
    await writeFile(
      join(dir, 'hold', 'etc', 'hold.yaml'),
      JSON.stringify({
        server: { public_url: holdUrl, host: '127.0.0.1', port: holdPort, mode: 'dev' },
        identity: { plc_directory_url: network.plc.url },
        registration: { owner_did: account.did, public: true, allow_all_crew: true },
      }),
      { mode: 0o644 },
    )
    await writeFile(
      join(dir, 'appview', 'etc', 'appview.yaml'),
      JSON.stringify({
        server: {
          base_url: `http://127.0.0.1:${appviewPort}`,
          host: '127.0.0.1',
          port: appviewPort,
          mode: 'dev',
        },
        identity: { plc_directory_url: network.plc.url, handle_resolver_url: network.pds.url },
        registry: { default_hold_did: `did:web:localhost%3A${holdPort}` },
      }),
      { mode: 0o644 },
    )
    // The image's entrypoint and command, with the port its HEALTHCHECK reads too.
    const env = async (app: string, prefix: string, port: number) => {
      const config = await imageConfig(images[app]!)
      return ['env', `${prefix}_SERVER_PORT=${port}`, ...config.Entrypoint, ...config.Cmd]
    }
    hold = await Container.from(images.hold!)
    containers.push(hold)
    hold.start(await env('hold', 'ATCR_HOLD', holdPort), [
      `${join(dir, 'hold', 'etc')}:/etc/atcr:ro`,
      `${join(dir, 'hold', 'data')}:/var/lib/atcr-hold`,
    ])
    await untilReady(`http://127.0.0.1:${holdPort}/readyz`, hold)
    appview = await Container.from(images.appview!)
    containers.push(appview)
    appview.start(await env('appview', 'ATCR_APPVIEW', appviewPort), [
      `${join(dir, 'appview', 'etc')}:/etc/atcr:ro`,
      `${join(dir, 'appview', 'data')}:/var/lib/atcr`,
    ])
    await untilReady(`http://127.0.0.1:${appviewPort}/readyz`, appview)

    registry = `127.0.0.1:${appviewPort}`
    const layout = join(dir, 'image')
    await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ files: [{ path: 'deployed.txt', content: 'from the images\n' }] }],
    })
    const creds = `deploy.test:${account.appPassword}`
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `oci:${layout}:v1`,
      `docker://${registry}/deploy.test/app:v1`,
    ])
    const pulled = join(dir, 'pulled')
    await run('skopeo', [
      'copy',
      '--src-tls-verify=false',
      '--src-creds',
      creds,
      `docker://${registry}/deploy.test/app:v1`,
      `oci:${pulled}:v1`,
    ])
    const index = JSON.parse(await readFile(join(pulled, 'index.json'), 'utf8'))
    const pushed = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'))
    assert.equal(index.manifests[0].digest, pushed.manifests[0].digest)
  })

  it('HEALTHCHECK passes in the running containers, as the non-root user', async () => {
    for (const container of [hold, appview]) {
      const app = container === hold ? 'hold' : 'appview'
      const test = (await imageConfig(images[app]!)).Healthcheck!.Test
      assert.equal(test[0], 'CMD')
      const port =
        container === hold
          ? `ATCR_HOLD_SERVER_PORT=${holdPort}`
          : `ATCR_APPVIEW_SERVER_PORT=${appviewPort}`
      await container.exec(['env', port, ...test.slice(1)])
      assert.equal(await container.exec(['id', '-u']), APP_UID)
    }
  })

  it('podman-compose reads compose.yaml: every service, with its image, config and volumes', async () => {
    // podman-compose (Debian's 1.0) has no `config`: a dry run parses the file and prints the
    // podman commands, though it does create the project's volumes and network (removed after).
    const project = `atcrdeploy${process.pid}`
    const volumes = ['caddy-data', 'postgres-data', 'appview-data', 'minio-data', 'hold-data']
    try {
      const result = await run(
        'podman-compose',
        ['--dry-run', '-p', project, '-f', join(root, 'deploy', 'compose.yaml'), 'up'],
        { env: { POSTGRES_PASSWORD: 'pw', S3_SECRET_KEY: 'key' } },
      )
      const out = result.stdout + result.stderr
      for (const service of ['caddy', 'postgres', 'appview-1', 'appview-2', 'minio', 'hold']) {
        assert.match(out, new RegExp(`podman create --name=${project}_${service}_1 `))
      }
      assert.match(out, /-v [^ ]*deploy\/config\/appview\.yaml:\/etc\/atcr\/appview\.yaml:ro/)
      assert.match(out, /-v [^ ]*deploy\/config\/hold\.yaml:\/etc\/atcr\/hold\.yaml:ro/)
      assert.match(out, /ATCR_APPVIEW_DATABASE_URL=postgres:\/\/atcr:pw@postgres:5432\/atcr/)
    } finally {
      for (const volume of volumes) {
        await run('podman', ['volume', 'rm', '--force', `${project}_${volume}`], { check: false })
      }
      await run('podman', ['network', 'rm', '--force', `${project}_default`], { check: false })
    }
  })

  it('the example configs are valid for their apps', async () => {
    const { holdConfig } = await import('../apps/hold/src/config.ts')
    const { appviewConfig } = await import('../apps/appview/src/config.ts')
    const hold = holdConfig.load({ file: join(root, 'deploy', 'config', 'hold.yaml'), env: {} })
    assert.equal(hold.storage.driver, 's3')
    const appview = appviewConfig.load({
      file: join(root, 'deploy', 'config', 'appview.yaml'),
      env: { ATCR_APPVIEW_DATABASE_URL: 'postgres://atcr:pw@postgres:5432/atcr' },
    })
    assert.deepEqual(appview.server.trust_proxy.length, 3)
  })
})
