// Operating the two services as deployed (each its executable, on a real PLC and PDS): the
// liveness and readiness routes, Prometheus metrics on their own listener, one request id
// from the AppView's log to the hold's, trust_proxy, and a SIGTERM that ends cleanly.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { type IncomingMessage, request } from 'node:http'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import {
  type AppViewProcess,
  freePort,
  type HoldProcess,
  makeTempDir,
  removeTempDir,
  run,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestAccount,
  type TestNetwork,
  writeOciImage,
} from '@atcr/testkit'

/** Waits for `found` to hold: a service's log lines reach us through a pipe, a little later. */
async function eventually(found: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!found()) {
    if (Date.now() > deadline) assert.fail(`never saw ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The value of one sample of a Prometheus text exposition (0 when it is absent). */
function sample(text: string, name: string, labels = ''): number {
  const escaped = `${name}${labels ? `{${labels}}` : ''}`.replace(/[{}.*+?^$()|[\]\\]/g, '\\$&')
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text)
  return match ? Number(match[1]) : 0
}

/** Whether a new TCP connection to the port on loopback is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

describe('operations: health, metrics, request ids, trust_proxy', () => {
  let network: TestNetwork
  let account: TestAccount
  let hold: HoldProcess
  let appview: AppViewProcess
  let dir: string
  let holdMetrics: number
  let appviewMetrics: number
  let layer: string
  let image: string

  before(async () => {
    dir = await makeTempDir('atcr-ops-http-')
    network = await startNetwork()
    account = await network.pds.createAccount('ops.test')
    holdMetrics = await freePort()
    appviewMetrics = await freePort()
    hold = await startHoldProcess({
      plcUrl: network.plc.url,
      ownerDid: account.did,
      logLevel: 'info',
      config: {
        server: { trust_proxy: ['127.0.0.1'] },
        metrics: { port: holdMetrics },
      },
    })
    appview = await startAppViewProcess({
      dataDir: `${dir}/appview`,
      plcUrl: network.plc.url,
      handleResolverUrl: network.pds.url,
      logLevel: 'info',
      config: {
        registry: { default_hold_did: hold.did },
        metrics: { port: appviewMetrics },
        // The hold's own firehose: its layer records of the push below, for the lag gauge.
        ingest: { enabled: true, sources: [{ type: 'firehose', url: hold.url }] },
      },
    })
    const layout = `${dir}/image`
    await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ files: [{ path: 'ops.txt', content: 'operations\n' }] }],
    })
    image = `${appview.url.replace('http://', '')}/ops.test/ops:v1`
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `ops.test:${account.appPassword}`,
      `oci:${layout}:v1`,
      `docker://${image}`,
    ])
    const manifest = await (
      await fetch(`${appview.url}/v2/ops.test/ops/manifests/v1`, {
        headers: {
          authorization: `Bearer ${await pullToken()}`,
          accept: 'application/vnd.oci.image.manifest.v1+json',
        },
      })
    ).json()
    layer = (manifest as { layers: { digest: string }[] }).layers[0]!.digest
  })
  after(async () => {
    await appview?.kill()
    await hold?.close()
    // The PLC directory is closed by a test already.
    await network?.close().catch(() => {})
    await removeTempDir(dir)
  })

  async function pullToken(actions = 'pull'): Promise<string> {
    const basic = Buffer.from(`ops.test:${account.appPassword}`).toString('base64')
    const service = new URL(appview.url).host
    const response = await fetch(
      `${appview.url}/auth/token?service=${service}&scope=repository:ops.test/ops:${actions}`,
      { headers: { authorization: `Basic ${basic}` } },
    )
    assert.equal(response.status, 200)
    return ((await response.json()) as { token: string }).token
  }

  it('/healthz and /readyz answer on both services, naming each check', async () => {
    for (const [base, checks] of [
      [appview.url, ['database', 'plc_directory']],
      [`http://127.0.0.1:${hold.port}`, ['database', 'storage', 'plc_directory']],
    ] as const) {
      const live = await fetch(`${base}/healthz`)
      assert.equal(live.status, 200)
      const ready = await fetch(`${base}/readyz`)
      const body = (await ready.json()) as { status: string; checks: Record<string, string> }
      assert.equal(ready.status, 200, JSON.stringify(body))
      assert.deepEqual(Object.keys(body.checks).sort(), [...checks].sort())
      assert.ok(Object.values(body.checks).every((v) => v === 'ok'))
    }
  })

  it('serves Prometheus metrics on the metrics listener only', async () => {
    const text = await (await fetch(`http://127.0.0.1:${appviewMetrics}/metrics`)).text()
    assert.match(text, /atcr_http_requests_total\{method="GET",route="\/v2\/",status="401"\} \d+/)
    const uploads = 'route="/v2/<name>/blobs/uploads/"'
    assert.match(
      text,
      new RegExp(`atcr_http_requests_total\\{method="PUT",${uploads},status="201"\\}`),
    )
    assert.match(
      text,
      /atcr_http_request_duration_seconds_count\{method="PUT",route="\/v2\/<name>\/manifests\/<reference>"\} 1/,
    )
    const received = new RegExp(`atcr_http_received_bytes_total\\{${uploads}\\} (\\d+)`).exec(text)
    assert.ok(received && Number(received[1]) > 0, 'upload bytes counted')
    const sent =
      /atcr_http_sent_bytes_total\{route="\/v2\/<name>\/manifests\/<reference>"\} (\d+)/.exec(text)
    assert.ok(sent && Number(sent[1]) > 0, 'manifest bytes sent')
    assert.match(text, /process_resident_memory_bytes \d+/)
    const holdText = await (await fetch(`http://127.0.0.1:${holdMetrics}/metrics`)).text()
    assert.match(holdText, /atcr_http_requests_total\{method="GET",route="\/readyz",status="200"\}/)
    // The indexer's lag behind the hold's firehose, once it has applied an event of it.
    let scraped = ''
    const scrape = async () => {
      scraped = await (await fetch(`http://127.0.0.1:${appviewMetrics}/metrics`)).text()
      return scraped
    }
    const deadline = Date.now() + 60_000
    while (!/atcr_ingest_lag_seconds\{source="[^"]+"\} [\d.e-]+/.test(await scrape())) {
      assert.ok(Date.now() < deadline, `no ingest lag in:\n${scraped}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    assert.match(scraped, /atcr_ingest_consuming 1/)
    // Never on the public port.
    assert.equal((await fetch(`${appview.url}/metrics`)).status, 404)
    assert.equal((await fetch(`http://127.0.0.1:${hold.port}/metrics`)).status >= 400, true)
  })

  it('measures what a push, an upload and pulls change: storage, open uploads, cache hits', async () => {
    const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    const before = { hold: await scrape(holdMetrics), appview: await scrape(appviewMetrics) }
    // Every cache is listed from the start, with both results.
    const caches = [
      'did_document',
      'handle',
      'hold_endpoint',
      'service_token',
      'pds_record',
      'pds_blob',
      'repository_content',
      'hold_member',
      'image_config',
      'ingest_authority',
      'account_check',
    ]
    for (const cache of caches) {
      assert.match(
        before.appview,
        new RegExp(`atcr_cache_lookups_total\\{cache="${cache}",result="miss"\\}`),
      )
    }

    // An upload session held open: the AppView counts it, and the hold once a part reached it.
    const scope = 'repository:ops.test/ops:pull,push'
    const basic = Buffer.from(`ops.test:${account.appPassword}`).toString('base64')
    const service = new URL(appview.url).host
    const { token } = (await (
      await fetch(`${appview.url}/auth/token?service=${service}&scope=${scope}`, {
        headers: { authorization: `Basic ${basic}` },
      })
    ).json()) as { token: string }
    const opened = await fetch(`${appview.url}/v2/ops.test/ops/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(opened.status, 202)
    const location = opened.headers.get('location')!
    const openNow = () => sample(before.appview, 'atcr_upload_sessions')
    assert.equal(sample(await scrape(appviewMetrics), 'atcr_upload_sessions'), openNow() + 1)
    // More than one part (16 MiB by default), so the hold's upload has begun.
    const patched = await fetch(`${appview.url}${location}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: randomBytes(17 * 1024 * 1024),
    })
    assert.equal(patched.status, 202, await patched.text())
    const holdOpen = (text: string) => sample(text, 'atcr_upload_sessions')
    const holdUploading = await scrape(holdMetrics)
    assert.equal(holdOpen(holdUploading), holdOpen(before.hold) + 1)
    // Its first part (16 MiB) is stored on the hold.
    assert.ok(
      sample(holdUploading, 'atcr_hold_upload_parts_bytes') >=
        sample(before.hold, 'atcr_hold_upload_parts_bytes') + 16 * 1024 * 1024,
    )
    const cancelled = await fetch(`${appview.url}${location}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(cancelled.status, 204)
    assert.equal(sample(await scrape(appviewMetrics), 'atcr_upload_sessions'), openNow())
    assert.equal(holdOpen(await scrape(holdMetrics)), holdOpen(before.hold))

    // A push of new blobs: the hold stores exactly their bytes more.
    const layout = `${dir}/image2`
    const built = await writeOciImage(layout, {
      tag: 'v2',
      layers: [{ files: [{ path: 'big.bin', content: randomBytes(300_000) }] }],
    })
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `ops.test:${account.appPassword}`,
      `oci:${layout}:v2`,
      `docker://${appview.url.replace('http://', '')}/ops.test/ops:v2`,
    ])
    const pushed = built.config.size + built.layers.reduce((sum, l) => sum + l.size, 0)
    const stored = await scrape(holdMetrics)
    assert.equal(
      sample(stored, 'atcr_hold_stored_blobs'),
      sample(before.hold, 'atcr_hold_stored_blobs') + 1 + built.layers.length,
    )
    assert.equal(
      sample(stored, 'atcr_hold_stored_bytes'),
      sample(before.hold, 'atcr_hold_stored_bytes') + pushed,
    )

    // Two pulls of a blob: the second finds the hold's endpoint and a service token cached.
    const pullToken2 = await pullToken()
    const hits = (text: string, cache: string) =>
      sample(text, 'atcr_cache_lookups_total', `cache="${cache}",result="hit"`)
    const beforePulls = await scrape(appviewMetrics)
    const beforePullsHold = await scrape(holdMetrics)
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${appview.url}/v2/ops.test/ops/blobs/${layer}`, {
        headers: { authorization: `Bearer ${pullToken2}` },
        redirect: 'manual',
      })
      await response.body?.cancel()
      assert.ok(response.status < 400, `blob GET answered ${response.status}`)
    }
    const afterPulls = await scrape(appviewMetrics)
    for (const cache of ['hold_endpoint', 'service_token']) {
      assert.ok(hits(afterPulls, cache) > hits(beforePulls, cache), `${cache} hits grew`)
    }
    assert.ok(
      hits(await scrape(holdMetrics), 'service_token_signature') >
        hits(beforePullsHold, 'service_token_signature'),
      "the hold took the AppView's service token on trust again",
    )
  })

  it("carries one request id from the AppView's log to the hold's", async () => {
    const id = `ops-${Date.now()}`
    const response = await fetch(`${appview.url}/v2/ops.test/ops/blobs/${layer}`, {
      headers: { authorization: `Bearer ${await pullToken()}`, 'x-request-id': id },
      redirect: 'manual',
    })
    await response.body?.cancel()
    assert.ok(response.status < 400, `blob GET answered ${response.status}`)
    assert.equal(response.headers.get('x-request-id'), id)
    const logged = (output: string) =>
      output
        .split('\n')
        .filter((line) => line.includes(`"reqId":"${id}"`))
        .map((line) => JSON.parse(line) as { name?: string; req?: { url?: string } })
    await eventually(
      () => logged(appview.output()).some((l) => l.req?.url?.includes('/blobs/')),
      "the AppView's log line with the id",
    )
    await eventually(
      () => logged(hold.output()).some((l) => l.req?.url?.includes('com.atproto.sync.getBlob')),
      "the hold's log line of the AppView's call, with the same id",
    )
    // A malformed id is replaced, not logged as given.
    const odd = await fetch(`${appview.url}/v2/`, { headers: { 'x-request-id': 'a b\tc' } })
    assert.match(odd.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/)
  })

  it("carries an upload's request id to the hold's uploadPart, where the bytes stream on", async () => {
    const id = `ops-upload-${Date.now()}`
    const headers = { authorization: `Bearer ${await pullToken('pull,push')}`, 'x-request-id': id }
    const opened = await fetch(`${appview.url}/v2/ops.test/ops/blobs/uploads/`, {
      method: 'POST',
      headers,
    })
    assert.equal(opened.status, 202)
    const location = new URL(opened.headers.get('location')!, appview.url)
    // Larger than what goes to the hold in one call: a part streamed while it arrives.
    const blob = randomBytes(3 * 1024 * 1024)
    location.searchParams.set('digest', `sha256:${createHash('sha256').update(blob).digest('hex')}`)
    const stored = await fetch(location, { method: 'PUT', headers, body: blob })
    assert.equal(stored.status, 201, await stored.text())
    const called = (output: string, nsid: string) =>
      output
        .split('\n')
        .filter((line) => line.includes(`"reqId":"${id}"`))
        .some((line) => line.includes(nsid))
    await eventually(
      () => called(hold.output(), 'io.atcr.hold.uploadPart'),
      "the hold's log line of uploadPart, with the id",
    )
    // The JSON calls around the part (fetch.request, not fetch) carry it too.
    await eventually(
      () => called(hold.output(), 'io.atcr.hold.completeUpload'),
      "the hold's log line of completeUpload, with the id",
    )
  })

  it('believes X-Forwarded-For only from trust_proxy addresses', async () => {
    const forwarded = { 'x-forwarded-for': '203.0.113.7' }
    await (await fetch(`${appview.url}/v2/?who`, { headers: forwarded })).body?.cancel()
    await (
      await fetch(`http://127.0.0.1:${hold.port}/xrpc/_health?who`, { headers: forwarded })
    ).body?.cancel()
    const addressOf = (output: string, url: string) =>
      output
        .split('\n')
        .filter((line) => line.includes(`"url":"${url}"`))
        .map((line) => (JSON.parse(line) as { req: { remoteAddress: string } }).req.remoteAddress)
    // The AppView trusts no proxy by default; the hold was told to trust loopback.
    await eventually(
      () =>
        addressOf(appview.output(), '/v2/?who').length > 0 &&
        addressOf(hold.output(), '/xrpc/_health?who').length > 0,
      'both log lines',
    )
    assert.deepEqual(addressOf(appview.output(), '/v2/?who'), ['127.0.0.1'])
    assert.deepEqual(addressOf(hold.output(), '/xrpc/_health?who'), ['203.0.113.7'])
  })

  it('SIGTERM lets an upload in flight finish; the session resumes after the restart', async () => {
    const scope = 'repository:ops.test/ops:pull,push'
    const basic = Buffer.from(`ops.test:${account.appPassword}`).toString('base64')
    const service = new URL(appview.url).host
    const tokenResponse = await fetch(
      `${appview.url}/auth/token?service=${service}&scope=${scope}`,
      { headers: { authorization: `Basic ${basic}` } },
    )
    const { token } = (await tokenResponse.json()) as { token: string }
    const opened = await fetch(`${appview.url}/v2/ops.test/ops/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(opened.status, 202)
    const location = opened.headers.get('location')!
    const bytes = randomBytes(2 * 1024 * 1024)
    const half = bytes.byteLength / 2

    // A PATCH of unknown length: half its body, then SIGTERM, then the rest.
    const patch = request(`${appview.url}${location}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    })
    const answered = once(patch, 'response') as Promise<[IncomingMessage]>
    patch.write(bytes.subarray(0, half))
    await eventually(() => appview.output().includes(`"url":"${location}"`), 'the PATCH begun')
    const exited = once(appview.child, 'exit')
    appview.child.kill('SIGTERM')
    // Shutting down: new connections are refused, while this request goes on.
    const deadline = Date.now() + 30_000
    while (await accepts(appview.port)) {
      assert.ok(Date.now() < deadline, 'still accepting connections after SIGTERM')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    patch.end(bytes.subarray(half))
    const [response] = await answered
    response.resume()
    assert.equal(response.statusCode, 202)
    assert.equal(response.headers.range, `0-${bytes.byteLength - 1}`)
    const [code] = await exited
    assert.equal(code, 0)

    // Restarted in place, the same session takes the final PUT.
    appview = await startAppViewProcess({
      dataDir: `${dir}/appview`,
      port: appview.port,
      plcUrl: network.plc.url,
      handleResolverUrl: network.pds.url,
      config: { registry: { default_hold_did: hold.did } },
    })
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const put = await fetch(`${appview.url}${location}?digest=${digest}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(put.status, 201, await put.text())
    const head = await fetch(`${appview.url}/v2/ops.test/ops/blobs/${digest}`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('content-length'), String(bytes.byteLength))
  })

  it('/readyz answers 503 naming the PLC directory when it is gone; /healthz stays 200', async () => {
    await network.plc.close()
    const ready = await fetch(`${appview.url}/readyz`)
    const body = (await ready.json()) as { status: string; checks: Record<string, string> }
    assert.equal(ready.status, 503)
    assert.equal(body.checks.database, 'ok')
    assert.notEqual(body.checks.plc_directory, 'ok')
    assert.equal((await fetch(`${appview.url}/healthz`)).status, 200)
  })
})
