// scripts/build for real: each app's npm package, installed with npm into a prefix outside
// the checkout (so Node runs it from node_modules, where it strips no types), runs as the
// docs show: every executable's --version, `atcr-hold config init`, and the installed
// hold and AppView serving a skopeo push and pull on a real PLC and PDS.
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  type AppViewProcess,
  type HoldProcess,
  makeTempDir,
  removeTempDir,
  run,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestNetwork,
  writeOciImage,
} from '@atcr/testkit'

const root = fileURLToPath(new URL('..', import.meta.url))
const BINS = ['atcr-hold', 'atcr-appview', 'docker-credential-atcr', 'atcr']

/** Every file under `dir` whose name ends with `suffix`. */
async function filesEndingWith(dir: string, suffix: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((e) => e.isFile() && e.name.endsWith(suffix)).map((e) => e.name)
}

describe('scripts/build: the apps installed from their npm packages', () => {
  let dir: string
  let prefix: string
  let version: string

  before(async () => {
    dir = await makeTempDir('atcr-build-')
    prefix = join(dir, 'prefix')
    await run('node', ['scripts/build.ts'], { cwd: root, timeoutMs: 300_000 })
    const packages = (await readdir(join(root, 'build'))).filter((f) => f.endsWith('.tgz'))
    assert.deepEqual(packages.sort(), [
      'atcr-appview-0.1.0.tgz',
      'atcr-credential-helper-0.1.0.tgz',
      'atcr-hold-0.1.0.tgz',
    ])
    await run(
      'npm',
      [
        'install',
        '--global',
        '--prefix',
        prefix,
        '--no-audit',
        '--no-fund',
        ...packages.map((p) => join(root, 'build', p)),
      ],
      { cwd: dir, timeoutMs: 600_000 },
    )
    version = JSON.parse(await readFile(join(root, 'packages/core/package.json'), 'utf8')).version
  })
  after(async () => {
    await removeTempDir(dir)
  })

  it('installs JavaScript only: no TypeScript source of ours under the installed packages', async () => {
    const installed = join(prefix, 'lib/node_modules/@atcr')
    assert.deepEqual((await readdir(installed)).sort(), ['appview', 'credential-helper', 'hold'])
    for (const app of ['appview', 'credential-helper', 'hold']) {
      for (const ours of ['src', 'node_modules/@atcr/core/src']) {
        assert.deepEqual(await filesEndingWith(join(installed, app, ours), '.ts'), [], app)
        assert.ok((await filesEndingWith(join(installed, app, ours), '.js')).length > 5, app)
      }
    }
  })

  it('every executable answers --version from the prefix, outside the checkout', async () => {
    for (const bin of BINS) {
      const { stdout } = await run(join(prefix, 'bin', bin), ['--version'], { cwd: dir })
      assert.equal(stdout.trim(), version, bin)
    }
  })

  it('atcr-hold config init writes the annotated config', async () => {
    const file = join(dir, 'hold.yaml')
    await run(join(prefix, 'bin/atcr-hold'), ['config', 'init', file], { cwd: dir })
    assert.match(await readFile(file, 'utf8'), /^server:/m)
  })

  describe('the installed hold and AppView serve a push and a pull', () => {
    let network: TestNetwork
    let hold: HoldProcess
    let appview: AppViewProcess

    before(async () => {
      network = await startNetwork()
      const account = await network.pds.createAccount('built.test')
      hold = await startHoldProcess({
        plcUrl: network.plc.url,
        ownerDid: account.did,
        bin: join(prefix, 'bin/atcr-hold'),
      })
      appview = await startAppViewProcess({
        dataDir: join(dir, 'appview'),
        plcUrl: network.plc.url,
        handleResolverUrl: network.pds.url,
        bin: join(prefix, 'bin/atcr-appview'),
        config: { registry: { default_hold_did: hold.did } },
      })
      const layout = join(dir, 'image')
      await writeOciImage(layout, {
        tag: 'v1',
        layers: [{ files: [{ path: 'built.txt', content: 'from the npm package\n' }] }],
      })
      const image = `${appview.url.replace('http://', '')}/built.test/app:v1`
      const creds = `built.test:${account.appPassword}`
      await run('skopeo', [
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        creds,
        `oci:${layout}:v1`,
        `docker://${image}`,
      ])
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        '--src-creds',
        creds,
        `docker://${image}`,
        `oci:${join(dir, 'pulled')}:v1`,
      ])
    })
    after(async () => {
      await appview?.kill()
      await hold?.close()
      await network?.close()
    })

    it('the pulled image has the pushed layer, and both services are healthy', async () => {
      const blobs = await readdir(join(dir, 'pulled/blobs/sha256'))
      const pushed = await readdir(join(dir, 'image/blobs/sha256'))
      assert.deepEqual(blobs.sort(), pushed.sort())
      for (const base of [hold.url, appview.url]) {
        assert.equal((await fetch(`${base}/healthz`)).status, 200, base)
      }
    })
  })
})
