// deploy/compose.yaml's topology, run for real without containers (this machine cannot run
// them; the images are deploy.test.ts's): Caddy with deploy/config/Caddyfile, PostgreSQL,
// two AppViews and a hold with configs made from deploy/config/*.yaml and compose.yaml's
// environment, pushing and pulling with skopeo over TLS, then losing an AppView. The files
// are used as written but for what only a local run needs, swapped here and nowhere else:
// - names and ports: registry.example.com → registry.atcr.internal:PORT, hold.example.com
//   → hold.atcr.internal:PORT, each compose service (appview-1:5000, postgres:5432, ...) →
//   its loopback port; listeners bind 127.0.0.1. The two names resolve to loopback for
//   skopeo, curl and the AppViews only (privateHosts: their own /etc/hosts, no edit of the
//   machine's). Local names would not do: the AppView's OAuth client refuses an https
//   base_url on a loopback name, and a did:web of one is resolved over plain http.
// - the hold's identity: a did:plc on the local PLC, where hold.yaml lets it default to
//   did:web. atproto allows a port in a did:web for localhost only, and a test takes no
//   port 443; the did:plc names the same https URL on Caddy, so the AppView reaches the
//   hold the same way. registry.default_hold_did is that did:plc.
// - TLS: Caddy's own CA (`local_certs`) instead of Let's Encrypt; skopeo, curl and the
//   AppViews trust its root certificate.
// - dev mode and the local PLC and PDS (production mode refuses loopback addresses);
//   trust_proxy is Caddy's address here (loopback), not the compose network's ranges.
// - s3rver instead of MinIO (not in Debian; s3rver checks no signatures, and knows one
//   access key id, which replaces compose.yaml's).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  canUsePrivateHosts,
  freePort,
  type HoldProcess,
  hasCaddy,
  makeTempDir,
  type PrivateHosts,
  privateHosts,
  removeTempDir,
  run,
  startAppViewProcess,
  startCaddy,
  startHoldProcess,
  startNetwork,
  startPostgres,
  startS3,
  type TestAccount,
  type TestCaddy,
  type TestNetwork,
  type TestPostgres,
  type TestS3,
  writeOciImage,
} from '@atcr/testkit'
import { parse } from 'yaml'

const deploy = new URL('../../../deploy/', import.meta.url).pathname
const REGISTRY_NAME = 'registry.atcr.internal'
const HOLD_NAME = 'hold.atcr.internal'
const APPVIEW_BIN = new URL('../bin/atcr-appview', import.meta.url).pathname

type Section = Record<string, unknown>
type Config = Record<string, Section>

/** `text` with every `from` replaced by its `to` in one pass (no replacement is replaced again). */
function swap(text: string, names: Record<string, string>): string {
  const pattern = new RegExp(
    Object.keys(names)
      .sort((a, b) => b.length - a.length)
      .map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    'g',
  )
  return text.replace(pattern, (name) => names[name]!)
}

/** compose's `${VAR}` and `${VAR:?message}` with the values of `vars`. */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::\?[^}]*)?\}/g, (_, name: string) => {
    const found = vars[name]
    assert.ok(found !== undefined, `compose.yaml uses \${${name}}: give it a value`)
    return found
  })
}

/** `sections` over `config`, each section merged key by key. */
function over(config: Config, sections: Config): Config {
  const merged = { ...config }
  for (const [name, values] of Object.entries(sections))
    merged[name] = { ...merged[name], ...values }
  return merged
}

describe('deploy/: the compose topology behind Caddy over TLS', {
  skip: !hasCaddy()
    ? 'caddy is not installed (scripts/apt-deps.sh)'
    : !canUsePrivateHosts()
      ? 'needs root for unshare -m (private /etc/hosts)'
      : false,
}, () => {
  let dir: string
  let network: TestNetwork
  let account: TestAccount
  let postgres: TestPostgres
  let s3: TestS3
  let hold: HoldProcess
  let caddy: TestCaddy
  const appviews: AppViewProcess[] = []
  /** Each AppView's metrics listener (metrics.port), in the order of `appviews`. */
  const metricsUrls: string[] = []
  let holdMetricsUrl: string
  let registry: string
  let holdUrl: string
  let certDir: string
  let hosts: PrivateHosts

  before(async () => {
    dir = await makeTempDir('atcr-topology-')
    const compose = parse(await readFile(join(deploy, 'compose.yaml'), 'utf8')) as {
      services: Record<string, { environment?: Record<string, string> }>
    }
    const secrets = { POSTGRES_PASSWORD: 'topology-db-password', S3_SECRET_KEY: 'S3RVER' }

    network = await startNetwork()
    account = await network.pds.createAccount('topology.test')
    postgres = await startPostgres()
    await postgres.query(`CREATE ROLE atcr LOGIN PASSWORD '${secrets.POSTGRES_PASSWORD}'`)
    await postgres.query('CREATE DATABASE atcr OWNER atcr')

    const [registryPort, holdPublicPort, holdPort, appviewPort1, appviewPort2] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ])
    hosts = await privateHosts(dir, { [REGISTRY_NAME]: '127.0.0.1', [HOLD_NAME]: '127.0.0.1' })
    registry = `${REGISTRY_NAME}:${registryPort}`
    holdUrl = `https://${HOLD_NAME}:${holdPublicPort}`
    const holdHost = `${HOLD_NAME}:${holdPublicPort}`
    const holdYaml = await readFile(join(deploy, 'config', 'hold.yaml'), 'utf8')
    const { bucket } = (parse(holdYaml) as { storage: { s3: { bucket: string } } }).storage.s3
    s3 = await startS3(bucket)
    const names = {
      'registry.example.com': registry,
      'hold.example.com': holdHost,
      'appview-1:5000': `127.0.0.1:${appviewPort1}`,
      'appview-2:5000': `127.0.0.1:${appviewPort2}`,
      'hold:8080': `127.0.0.1:${holdPort}`,
      'postgres:5432': `127.0.0.1:${postgres.port}`,
      'http://minio:9000': s3.endpoint,
    }
    // compose.yaml's environment of a service, as compose would pass it.
    const environment = (service: string) =>
      Object.fromEntries(
        Object.entries(compose.services[service]?.environment ?? {}).map(([k, v]) => [
          k,
          swap(interpolate(String(v), secrets), names),
        ]),
      )
    const readConfig = async (file: string) =>
      parse(swap(await readFile(join(deploy, 'config', file), 'utf8'), names)) as Config
    const local = (port: number) => ({
      host: '127.0.0.1',
      port,
      mode: 'dev',
      trust_proxy: ['127.0.0.1'],
    })
    const identity = {
      plc_directory_url: network.plc.url,
      handle_resolver_url: network.pds.url,
    }

    const holdDir = join(dir, 'hold')
    await mkdir(holdDir)
    const holdMetricsPort = await freePort()
    holdMetricsUrl = `http://127.0.0.1:${holdMetricsPort}/metrics`
    hold = await startHoldProcess({
      plcUrl: network.plc.url,
      ownerDid: account.did,
      storage: { s3 },
      dataDir: holdDir,
      port: holdPort,
      logLevel: 'info',
      config: over(await readConfig('hold.yaml'), {
        server: { ...local(holdPort), data_dir: holdDir },
        identity: {
          ...identity,
          did_method: 'plc',
          rotation_key_path: join(holdDir, 'rotation.key'),
        },
        registration: { owner_did: account.did },
        metrics: { host: '127.0.0.1', port: holdMetricsPort },
      }),
      env: { ...environment('hold'), ATCR_HOLD_STORAGE_S3_ACCESS_KEY_ID: s3.accessKeyId },
    })

    const caddyfile = await readFile(join(deploy, 'config', 'Caddyfile'), 'utf8')
    caddy = await startCaddy({
      sites: swap(caddyfile, names),
      ports: [registryPort, holdPublicPort],
    })
    // skopeo reads CA certificates (*.crt) from a directory.
    certDir = join(dir, 'certs')
    await mkdir(certDir)
    await copyFile(caddy.rootCertificate, join(certDir, 'caddy-local-ca.crt'))

    // One data dir for both, the first alone on it first (deploy/README.md).
    const appviewConfig = await readConfig('appview.yaml')
    const appviewDir = join(dir, 'appview')
    for (const port of [appviewPort1, appviewPort2]) {
      const metricsPort = await freePort()
      metricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`)
      appviews.push(
        await startAppViewProcess({
          dataDir: appviewDir,
          port,
          bin: await hosts.wrap(APPVIEW_BIN, `atcr-appview-${port}`),
          baseUrl: appviewConfig.server!.base_url as string,
          plcUrl: network.plc.url,
          handleResolverUrl: network.pds.url,
          logLevel: 'info',
          config: over(appviewConfig, {
            server: { ...local(port), data_dir: appviewDir },
            identity,
            registry: { default_hold_did: hold.did },
            metrics: { host: '127.0.0.1', port: metricsPort },
          }),
          env: {
            ...environment(port === appviewPort1 ? 'appview-1' : 'appview-2'),
            NODE_EXTRA_CA_CERTS: caddy.rootCertificate,
          },
        }),
      )
    }
    // Caddy checks /readyz every 10 s: both AppViews were down at its first check. It
    // issues each site's certificate on its own: until then a handshake fails (curl 35).
    const answers = (url: string, status: number) =>
      curl(url).then(
        (answer) => answer.status === status,
        () => false,
      )
    const deadline = Date.now() + 60_000
    while (
      !(await answers(`https://${registry}/v2/`, 401)) ||
      !(await answers(`${holdUrl}/.well-known/atproto-did`, 200))
    ) {
      assert.ok(Date.now() < deadline, `Caddy never served both sites:\n${caddy.output()}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })

  after(async () => {
    for (const appview of appviews) await appview.kill()
    await caddy?.close()
    await hold?.close()
    await s3?.close()
    await postgres?.close()
    await network?.close()
    await removeTempDir(dir)
  })

  /** An HTTPS request checked against Caddy's CA only, seeing the private names. */
  async function curl(url: string): Promise<{ status: number; body: string }> {
    const { stdout } = await run(
      ...hosts.command('curl', [
        '--silent',
        '--cacert',
        caddy.rootCertificate,
        '--write-out',
        '\n%{http_code}',
        url,
      ]),
    )
    const end = stdout.lastIndexOf('\n')
    return { status: Number(stdout.slice(end + 1)), body: stdout.slice(0, end) }
  }

  const skopeo = (args: string[]) => run(...hosts.command('skopeo', args), { timeoutMs: 120_000 })
  const creds = () => `topology.test:${account.appPassword}`

  /** Pushes a new image through Caddy, pulls it back into another layout; both digests. */
  async function pushAndPull(tag: string): Promise<{ pushed: string; pulled: string }> {
    const layout = join(dir, `push-${tag}`)
    const built = await writeOciImage(layout, {
      tag,
      layers: [{ files: [{ path: `${tag}.txt`, content: `image ${tag} ${Date.now()}\n` }] }],
    })
    const reference = `docker://${registry}/topology.test/app:${tag}`
    await skopeo([
      'copy',
      '--dest-cert-dir',
      certDir,
      '--dest-creds',
      creds(),
      `oci:${layout}:${tag}`,
      reference,
    ])
    const pulledLayout = join(dir, `pull-${tag}`)
    await skopeo([
      'copy',
      '--src-cert-dir',
      certDir,
      '--src-creds',
      creds(),
      reference,
      `oci:${pulledLayout}:${tag}`,
    ])
    const index = JSON.parse(await readFile(join(pulledLayout, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[]
    }
    const pulled = index.manifests[0]!.digest
    // The pulled layer's bytes are those pushed.
    const layer = built.layers[0]!.digest
    const bytes = await readFile(join(pulledLayout, 'blobs', 'sha256', layer.slice(7)))
    assert.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer)
    return { pushed: built.manifest.digest, pulled }
  }

  it('serves the hold on its own domain over TLS, its DID document naming that URL', async () => {
    const { status, body } = await curl(`${holdUrl}/.well-known/atproto-did`)
    assert.equal(status, 200, body)
    assert.equal(body.trim(), hold.did)
    const document = (await (await fetch(`${network.plc.url}/${hold.did}`)).json()) as {
      service: { serviceEndpoint: string }[]
    }
    assert.ok(
      document.service.some((s) => s.serviceEndpoint === holdUrl),
      JSON.stringify(document.service),
    )
    // Ready: its database, the S3 bucket of hold.yaml, the PLC directory.
    const ready = await curl(`${holdUrl}/readyz`)
    assert.equal(ready.status, 200, ready.body)
  })

  it('pushes and pulls an image with skopeo through Caddy, balanced over both AppViews', async () => {
    const { pushed, pulled } = await pushAndPull('v1')
    assert.equal(pulled, pushed)
    // Round robin: both instances answered requests of the push and pull.
    for (const appview of appviews) {
      assert.match(appview.output(), /"url":"\/v2\/topology\.test\/app\//)
    }
    // The AppViews' calls reached the hold through Caddy with the id of the request they
    // served: one id in both logs. (The kept output is bounded: its first line may be cut.)
    const reqIds = (output: string, url: RegExp) =>
      new Set(
        output
          .split('\n')
          .filter((line) => line.startsWith('{"level"') && line.includes('"incoming request"'))
          .filter((line) => url.test(line))
          .map((line) => (JSON.parse(line) as { reqId: string }).reqId),
      )
    const holdCalls = reqIds(hold.output(), /"url":"\/xrpc\/io\.atcr\.hold\./)
    assert.ok(holdCalls.size > 0, 'the hold logged the upload calls')
    const appviewIds = new Set(appviews.flatMap((a) => [...reqIds(a.output(), /"url":"\/v2\//)]))
    assert.ok(
      [...holdCalls].some((id) => appviewIds.has(id)),
      'a request id of the AppViews in the hold log',
    )
  })

  it('after one AppView is killed, the next push and pull go through the other', async () => {
    await appviews[0]!.kill('SIGKILL')
    const { pushed, pulled } = await pushAndPull('v2')
    assert.equal(pulled, pushed)
    assert.match(appviews[1]!.output(), /"url":"\/v2\/topology\.test\/app\/manifests\/v2"/)
    // Its metrics (on PostgreSQL): the manifest it stored, no upload left open.
    const text = await (await fetch(metricsUrls[1]!)).text()
    assert.match(
      text,
      /atcr_http_requests_total\{method="PUT",route="\/v2\/<name>\/manifests\/<reference>",status="201"\} [1-9]/,
    )
    assert.match(text, /^atcr_upload_sessions 0$/m)
    // The hold stores both images' layer and config (four blobs), none of its uploads open.
    const holdText = await (await fetch(holdMetricsUrl)).text()
    assert.match(holdText, /^atcr_hold_stored_blobs 4$/m)
    assert.match(holdText, /^atcr_upload_sessions 0$/m)
  })
})
