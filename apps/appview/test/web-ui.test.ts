// The web UI in a real browser (Debian's chromium, headless, driven by playwright-core)
// against the testkit's real PLC, PDS and holds and an AppView: images pushed with skopeo
// appear on the pages; stars, the repository description and the default hold are written
// to the user's PDS through their OAuth session; a hostile README stays text; the pull
// command's copy button is reachable by keyboard; axe-core finds no serious accessibility
// violation on any page. Every page is saved as a screenshot in light and dark mode under
// test-artifacts/web-ui/ (git-ignored; the path is printed).
//
// The holds' captain records reach the index here through ctx.index.apply, read from each
// hold's own repository exactly as the firehose consumer would hand them over (that
// consumer is not started by this harness).
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { NSID, SELF_RKEY } from '@atcr/core/lexicons'
import {
  approveOnAuthorizePage,
  createOciLayout,
  type HoldProcess,
  hasChromium,
  hasCommand,
  launchBrowser,
  run,
  startHoldProcess,
  type TestBrowser,
} from '@atcr/testkit'
import { bytes } from '../src/web/format.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

const missing = ['skopeo'].filter((c) => !hasCommand(c))
if (!hasChromium()) missing.push('chromium')

const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/web-ui/', import.meta.url))
const VIEWS = fileURLToPath(new URL('../views/', import.meta.url))
const AXE_SOURCE = createRequire(import.meta.url).resolve('axe-core/axe.min.js')

interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: { target: string[] }[]
}

describe('the web UI in a real browser', {
  skip: missing.length > 0 && `missing ${missing.join(', ')}`,
}, () => {
  let stack: RegistryStack
  let browser: TestBrowser
  let page: Awaited<ReturnType<TestBrowser['newPage']>>
  let dir: string
  let layoutDir: string
  let secondHold: HoldProcess
  let axeSource: string
  let webappDigest: string

  const creds = () => `${stack.alice.did}:${stack.alice.appPassword}`
  const imageRef = (repository: string) =>
    `docker://${stack.host}/${stack.nameOf(stack.alice, repository)}`
  const push = async (source: string, repository: string, tag: string, all = false) => {
    await run('skopeo', [
      'copy',
      ...(all ? ['--all'] : []),
      '--dest-tls-verify=false',
      '--dest-creds',
      creds(),
      `oci:${layoutDir}:${source}`,
      `${imageRef(repository)}:${tag}`,
    ])
    await stack.appview.ctx.index.settled()
  }
  const open = async (path: string) => {
    const response = await page.goto(`${stack.url}${path}`)
    return response!
  }
  const mainText = async () => (await page.textContent('main')) ?? ''
  /** Feeds a hold's captain record to the index, as the firehose consumer would. */
  const indexCaptain = async (hold: HoldProcess) => {
    const url = `${hold.url}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(hold.did)}&collection=${NSID.holdCaptain}&rkey=${SELF_RKEY}`
    const response = await fetch(url)
    assert.equal(response.status, 200, await response.clone().text())
    const { value } = (await response.json()) as { value: unknown }
    const outcome = await stack.appview.ctx.index.apply({
      did: hold.did,
      collection: NSID.holdCaptain,
      rkey: SELF_RKEY,
      record: value,
    })
    assert.equal(outcome, 'indexed')
  }
  const aliceRecords = async (collection: string) =>
    (
      await stack.alice.agent.com.atproto.repo.listRecords({
        repo: stack.alice.did,
        collection,
      })
    ).data.records

  before(async () => {
    stack = await startRegistryStack()
    secondHold = await startHoldProcess({ plcUrl: stack.net.plc.url, ownerDid: stack.alice.did })
    browser = await launchBrowser()
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], {
      origin: stack.url,
    })
    axeSource = await readFile(AXE_SOURCE, 'utf8')
    dir = await mkdtemp(join(tmpdir(), 'atcr-web-ui-'))
    await mkdir(ARTIFACTS, { recursive: true })
    layoutDir = join(dir, 'layout')
    const layout = await createOciLayout(layoutDir)
    const webapp = await layout.addImage({
      tag: 'webapp',
      layers: [
        { files: [{ path: 'etc/motd', content: 'welcome\n' }], createdBy: 'COPY motd /etc/motd' },
        {
          files: [{ path: 'bin/webapp', content: '#!/bin/sh\necho webapp\n', mode: 0o755 }],
          createdBy: 'RUN make install-webapp',
        },
      ],
      config: {
        Env: ['PATH=/usr/bin:/bin', 'WEBAPP_MODE=demo'],
        Entrypoint: ['/bin/webapp'],
        Labels: { 'org.example.team': 'registry-ui' },
      },
      annotations: { 'org.opencontainers.image.description': 'A demo web app for the web UI test' },
    })
    const amd = await layout.addImage({
      platform: { architecture: 'amd64', os: 'linux' },
      layers: [{ files: [{ path: 'arch', content: 'amd64' }], createdBy: 'RUN build-for-amd64' }],
    })
    const arm = await layout.addImage({
      platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
      layers: [{ files: [{ path: 'arch', content: 'arm64' }], createdBy: 'RUN build-for-arm64' }],
    })
    await layout.addIndex({ manifests: [amd, arm], tag: 'multi' })
    await layout.addImage({
      tag: 'webapp2',
      layers: [{ files: [{ path: 'etc/motd', content: 'version two\n' }] }],
    })

    await layout.addArtifact({
      artifactType: 'application/vnd.example.sbom.v1',
      blobs: [{ mediaType: 'application/vnd.example.sbom.v1+json', content: '{"packages":[]}' }],
      subject: webapp.manifest,
      tag: 'sbom',
    })

    webappDigest = webapp.manifest.digest
    await push('webapp', 'webapp', 'v1')
    await push('sbom', 'webapp', 'sbom')
    await push('multi', 'multiarch', 'latest', true)

    page = await browser.newPage()
    await open('/auth/oauth/login?return_to=%2Fsettings')
    await page.getByLabel('Your handle').fill('alice.test')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await approveOnAuthorizePage(page, stack.alice, stack.net.pds.url)
    await page.waitForURL(`${stack.url}/settings`)
  })
  after(async () => {
    await browser?.close()
    await secondHold?.close()
    await stack?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })
  afterEach((t) => stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string }))

  it('lists a pushed repository on home and finds it by name, handle, description and tag', async () => {
    await open('/')
    await page.getByRole('link', { name: 'alice.test/webapp' }).first().waitFor()
    assert.match(await mainText(), /A demo web app for the web UI test/)
    const search = async (query: string) => {
      await open('/')
      await page.getByLabel(/Search repositories by name/).fill(query)
      await page.getByLabel(/Search repositories by name/).press('Enter')
      await page.waitForURL(/\/search\?q=/)
      const names = await page.locator('main .cards .name').allTextContents()
      return names.map((n) => n.trim())
    }
    assert.deepEqual(await search('webapp'), ['alice.test/webapp'])
    assert.deepEqual((await search('ALICE.test')).sort(), [
      'alice.test/multiarch',
      'alice.test/webapp',
    ])
    assert.deepEqual(await search('demo web app'), ['alice.test/webapp'])
    assert.deepEqual(await search('v1'), ['alice.test/webapp'])
    assert.deepEqual(await search('nothing-like-this'), [])
    assert.match(await mainText(), /No repository matches/)
  })

  it('shows tags, platforms and layers with the commands that made them', async () => {
    await open('/r/alice.test/multiarch')
    const row = page.locator('table tr', { hasText: 'latest' })
    assert.deepEqual(await row.locator('.chip').allTextContents(), [
      'linux/amd64',
      'linux/arm64/v8',
    ])
    assert.match(await mainText(), /Layers \(linux\/amd64\)/)
    assert.match(await mainText(), /RUN build-for-amd64/)
    assert.doesNotMatch(await mainText(), /untagged/)
    // A multi-platform image's size is that of its platforms' images, not of their manifests.
    const images = (
      await stack.appview.ctx.web.browse.manifests(stack.alice.did, 'multiarch')
    ).filter((m) => m.platforms === null)
    assert.equal(images.length, 2)
    const total = bytes(images.reduce((sum, m) => sum + m.size, 0))
    assert.match((await row.textContent()) ?? '', new RegExp(`${total.replace('.', '\\.')}`))

    await open('/r/alice.test/webapp')
    const layers = page.locator('section', { has: page.locator('#layers-heading') })
    assert.match(
      (await layers.textContent()) ?? '',
      /COPY motd \/etc\/motd[\s\S]*RUN make install-webapp/,
    )
    assert.equal(
      (await page.locator('#pull-command').textContent())?.trim(),
      `docker pull ${stack.host}/alice.test/webapp:v1`,
    )
    assert.match(await mainText(), /org\.opencontainers\.image\.description/)
    const referrers = page.locator('section', { has: page.locator('#referrers-heading') })
    // Grouped by artifact type as the index has it: records do not carry the manifest's
    // artifactType, so an artifact on the empty config is grouped under that media type.
    assert.match((await referrers.textContent()) ?? '', /application\/vnd\.oci\.empty\.v1\+json/)
    assert.match((await referrers.textContent()) ?? '', new RegExp(webappDigest.slice(7, 19)))
    assert.match(
      await mainText(),
      new RegExp(`Stored on\\s*${stack.hold.did.replaceAll('.', '\\.')}`),
    )

    await page.getByRole('link', { name: 'v1', exact: true }).click()
    await page.waitForURL(/\/-\/v1$/)
    const text = await mainText()
    assert.match(text, /WEBAPP_MODE=demo/)
    assert.match(text, /\["\/bin\/webapp"\]/)
    assert.match(text, /org\.example\.team/)
    assert.match(text, /atcr verify .*alice\.test\/webapp@sha256:[0-9a-f]{64}/)
    const raw = JSON.parse((await page.locator('pre code').textContent()) ?? '')
    assert.equal(raw.layers.length, 2)
  })

  it('renders a README with a script as text, never running it', async () => {
    await open('/r/alice.test/webapp')
    await page.getByText('Edit the description').click()
    await page
      .getByLabel(/Description \(Markdown/)
      .fill(
        '# Webapp\n\nHello **readers**.\n\n<script>window.__readmeRan = true</script>\n\n' +
          '<img src="https://example.invalid/x.png" onerror="window.__readmeRan = true">\n\n' +
          '[click me](javascript:window.__readmeRan=true)\n',
      )
    await page.getByRole('button', { name: 'Save description' }).click()
    await page.waitForURL(`${stack.url}/r/alice.test/webapp`)
    const readme = page.locator('.readme')
    assert.match((await readme.textContent()) ?? '', /Hello readers/)
    assert.equal(await readme.locator('script').count(), 0)
    assert.equal(await readme.locator('[onerror]').count(), 0)
    assert.equal(await readme.locator('a[href^="javascript"]').count(), 0)
    assert.equal(await page.evaluate('typeof window.__readmeRan'), 'undefined')
    const [pageRecord] = await aliceRecords(NSID.repoPage)
    assert.ok(pageRecord)
    assert.match(String((pageRecord.value as { description?: string }).description), /<script>/)
  })

  it('stars and unstars: the count and the record in the PDS follow', async () => {
    await open('/r/alice.test/webapp')
    assert.match((await page.locator('#star-count').textContent()) ?? '', /0 stars/)
    await page.getByRole('button', { name: 'Star', exact: true }).click()
    await page.waitForURL(`${stack.url}/r/alice.test/webapp`)
    assert.match((await page.locator('#star-count').textContent()) ?? '', /1 star\b/)
    const stars = await aliceRecords(NSID.sailorStar)
    assert.equal(stars.length, 1)
    assert.equal(
      (stars[0]!.value as { subject: string }).subject,
      `at://${stack.alice.did}/${NSID.repoPage}/webapp`,
    )
    await open('/')
    assert.match(
      (await page.locator('main').textContent()) ?? '',
      /Popular repositories[\s\S]*alice\.test\/webapp/,
    )

    await open('/r/alice.test/webapp')
    await page.getByRole('button', { name: 'Unstar' }).click()
    await page.waitForURL(`${stack.url}/r/alice.test/webapp`)
    assert.match((await page.locator('#star-count').textContent()) ?? '', /0 stars/)
    assert.equal((await aliceRecords(NSID.sailorStar)).length, 0)
  })

  it('reaches the pull command copy button by keyboard alone, and copies the command', async () => {
    await open('/r/alice.test/webapp')
    let reached = false
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press('Tab')
      reached =
        (await page.evaluate('document.activeElement?.getAttribute("aria-label")')) ===
        'Copy the pull command'
    }
    assert.ok(reached, 'Tab never reached the copy button')
    await page.keyboard.press('Enter')
    assert.equal(
      await page.evaluate('navigator.clipboard.readText()'),
      `docker pull ${stack.host}/alice.test/webapp:v1`,
    )
  })

  it('changes the default hold in settings; the next push lands on it', async () => {
    await indexCaptain(stack.hold)
    await indexCaptain(secondHold)
    await open('/settings')
    await page.getByLabel(new RegExp(secondHold.did.replaceAll('.', '\\.'))).check()
    await page.getByLabel('Show pull commands for').selectOption('podman')
    await page.getByRole('button', { name: 'Save settings' }).click()
    await page.waitForURL(/\/settings\?done=saved/)
    assert.match(await mainText(), /Settings saved/)
    const profile = await stack.alice.agent.com.atproto.repo.getRecord({
      repo: stack.alice.did,
      collection: NSID.sailorProfile,
      rkey: SELF_RKEY,
    })
    const saved = profile.data.value as { defaultHold?: string; ociClient?: string }
    assert.equal(saved.defaultHold, secondHold.did)
    assert.equal(saved.ociClient, 'podman')

    await push('webapp2', 'webapp', 'v2')
    await open('/r/alice.test/webapp/-/v2')
    assert.match(await mainText(), new RegExp(`Hold\\s*${secondHold.did.replaceAll('.', '\\.')}`))
    assert.equal(
      (await page.locator('#pull-command').textContent())?.trim(),
      `podman pull ${stack.host}/alice.test/webapp:v2`,
    )
    const manifests = await aliceRecords(NSID.manifest)
    const v2 = manifests.find((m) => (m.value as { holdDid?: string }).holdDid === secondHold.did)
    assert.ok(v2, 'no manifest record names the new hold')
  })

  it('with autoRemoveUntagged on, a moved or deleted tag takes the image it untagged away', async () => {
    await open('/settings')
    await page.getByLabel(/Remove untagged images/).check()
    await page.getByRole('button', { name: 'Save settings' }).click()
    await page.waitForURL(/\/settings\?done=saved/)
    const profile = await stack.alice.agent.com.atproto.repo.getRecord({
      repo: stack.alice.did,
      collection: NSID.sailorProfile,
      rkey: SELF_RKEY,
    })
    const value = profile.data.value as { defaultHold?: string; autoRemoveUntagged?: boolean }
    assert.equal(value.autoRemoveUntagged, true)
    assert.equal(value.defaultHold, secondHold.did, 'the default hold stays as chosen')

    const browse = stack.appview.ctx.web.browse
    const digestOf = async (tag: string) =>
      (await browse.tags(stack.alice.did, 'webapp')).find((t) => t.tag === tag)?.digest
    const recorded = async (digest: string) =>
      (await aliceRecords(NSID.manifest)).some(
        (r) => (r.value as { digest: string }).digest === digest,
      )
    const first = (await digestOf('v1'))!
    const second = (await digestOf('v2'))!
    assert.ok(await recorded(first))

    await push('webapp2', 'webapp', 'v1')
    assert.equal(await digestOf('v1'), second)
    assert.equal(await recorded(first), false, 'the image v1 left is deleted with its record')
    await open('/r/alice.test/webapp')
    assert.doesNotMatch(await mainText(), new RegExp(first.slice(7, 19)))

    const name = stack.nameOf(stack.alice, 'webapp')
    const deleteTag = (tag: string) =>
      stack.request(`/v2/${name}/manifests/${tag}`, {
        method: 'DELETE',
        as: stack.alice,
        scopes: [repoScope(name)],
      })
    await push('webapp', 'webapp', 'old')
    assert.ok(await recorded(first))
    assert.equal((await deleteTag('old')).status, 202)
    assert.equal(await recorded(first), false, 'deleting its only tag deletes the image')
    assert.equal((await deleteTag('v2')).status, 202)
    assert.ok(await recorded(second), 'an image still tagged v1 stays')
    assert.equal(await digestOf('v1'), second)
  })

  it('answers bad input with an error page, never a 500, and refuses forms without a CSRF token', async () => {
    const get = (path: string) => fetch(`${stack.url}${path}`)
    for (const [path, status] of [
      ['/r/alice.test/no-such-repository', 404],
      ['/r/nobody.invalid/app', 404],
      ['/r/alice.test/webapp/-/no-such-tag', 404],
      ['/r/alice.test/webapp/-/sha256:0000', 404],
      ['/r/alice.test/UPPER', 404],
      ['/u/not%20a%20handle', 404],
      ['/search?q=%25&page=abc', 200],
      [`/search?q=${'x'.repeat(5000)}`, 200],
    ] as const) {
      const response = await get(path)
      assert.equal(response.status, status, path)
      assert.match(response.headers.get('content-type') ?? '', /text\/html/, path)
      const csp = response.headers.get('content-security-policy') ?? ''
      assert.match(csp, /script-src 'self'/)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
    }
    // "%" is a literal character, not a wildcard.
    assert.match(await (await get('/search?q=%25')).text(), /No repository matches/)

    const static_ = await get(`/static/app.css`)
    assert.equal(static_.status, 200)
    assert.match(static_.headers.get('cache-control') ?? '', /immutable/)

    const cookie = (await browser.context.cookies(stack.url))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ')
    const post = (path: string, body: Record<string, string>, headers = {}) =>
      fetch(`${stack.url}${path}`, {
        method: 'POST',
        body: new URLSearchParams(body),
        headers: { cookie, ...headers },
        redirect: 'manual',
      })
    // Every form that posts, as the views write it: one without a token, or with a forged
    // token from another site, is refused and changes nothing.
    const records = async () =>
      JSON.stringify(
        await Promise.all(
          [NSID.sailorStar, NSID.repoPage, NSID.sailorProfile].map((c) => aliceRecords(c)),
        ),
      )
    const before = await records()
    const actions = await postedFormActions(VIEWS, {
      'it.path': ['/r/alice.test/webapp'],
      "it.starred ? 'unstar' : 'star'": ['star', 'unstar'],
      'device.id': ['some-device'],
    })
    assert.ok(actions.length >= 7, actions.join(' '))
    for (const path of actions) {
      const bare = await post(path, { description: 'x', default_hold: '', user_code: 'X' })
      assert.equal(bare.status, 403, path)
      const forged = await post(path, { _csrf: 'forged' }, { origin: 'https://evil.example' })
      assert.equal(forged.status, 403, path)
    }
    assert.equal(await records(), before, 'no record changed')
    assert.equal((await aliceRecords(NSID.sailorStar)).length, 0)
    // Still signed in: the sign-out form was refused too.
    const settings = await fetch(`${stack.url}/settings`, {
      headers: { cookie },
      redirect: 'manual',
    })
    assert.equal(settings.status, 200)
    await settings.body?.cancel()

    // With a real token (the page's own form), a hold the user may not use is refused.
    await open('/settings')
    const token = await page.locator('input[name="_csrf"]').first().inputValue()
    const refused = await page.request.post(`${stack.url}/settings/profile`, {
      form: { _csrf: token, default_hold: 'did:web:hold.example.com' },
      maxRedirects: 0,
    })
    assert.equal(refused.status(), 400)
    assert.match(await refused.text(), /not a hold you may push to/)
    const tooLong = await page.request.post(`${stack.url}/r/alice.test/webapp/-/description`, {
      form: { _csrf: token, description: 'é'.repeat(50_001) },
      maxRedirects: 0,
    })
    assert.equal(tooLong.status(), 400)
    assert.match(await tooLong.text(), /longer than 100,000 bytes/)
    const [unchanged] = await aliceRecords(NSID.repoPage)
    assert.ok(unchanged)
    assert.match(String((unchanged.value as { description?: string }).description), /Hello/)
  })

  it('has no serious accessibility violations on any page; screenshots in light and dark', async (t) => {
    // [screenshot name, path, the view it renders]
    const pages: [string, string, string][] = [
      ['home', '/', 'home'],
      ['search', '/search?q=alice', 'search'],
      ['repository', '/r/alice.test/webapp', 'repository'],
      ['repository-multiarch', '/r/alice.test/multiarch', 'repository'],
      ['tag', '/r/alice.test/webapp/-/v1', 'manifest'],
      ['index', '/r/alice.test/multiarch/-/latest', 'manifest'],
      ['user', '/u/alice.test', 'user'],
      ['settings', '/settings', 'settings'],
      ['device', '/device', 'device'],
      ['sign-in', '/auth/oauth/login', 'sign-in'],
      ['not-found', '/no-such-page', 'error'],
    ]
    // Every page view is visited (a new view fails here until it is added above), but the
    // answer to a device decision, which only a POST renders (web-oauth.test.ts).
    const views = (await readdir(VIEWS))
      .filter((f) => f.endsWith('.eta') && f !== 'layout.eta' && f !== 'device-decided.eta')
      .map((f) => f.replace(/\.eta$/, ''))
    assert.deepEqual([...new Set(pages.map(([, , view]) => view))].sort(), views.sort())
    const problems: string[] = []
    for (const [name, path] of pages) {
      const response = await open(path)
      assert.equal(response.status(), name === 'not-found' ? 404 : 200, path)
      // The security headers of every page.
      const headers = response.headers()
      const csp = headers['content-security-policy'] ?? ''
      assert.match(csp, /script-src 'self'/, path)
      assert.match(csp, /frame-ancestors 'none'/, path)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, path)
      assert.equal(headers['x-content-type-options'], 'nosniff', path)
      assert.equal(headers['referrer-policy'], 'strict-origin-when-cross-origin', path)
      await page.evaluate(axeSource)
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme: scheme })
        const violations = (await page.evaluate(
          'axe.run().then((result) => result.violations)',
        )) as AxeViolation[]
        for (const v of violations) {
          if (v.impact === 'serious' || v.impact === 'critical') {
            problems.push(
              `${path} (${scheme}): ${v.id} ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
            )
          }
        }
        await page.screenshot({ path: join(ARTIFACTS, `${name}-${scheme}.png`), fullPage: true })
      }
      await page.emulateMedia({ colorScheme: null })
    }
    t.diagnostic(`screenshots in ${ARTIFACTS}`)
    assert.deepEqual(problems, [])
  })
})

/**
 * The actions of the `method="post"` forms of every view, with each template expression
 * in them replaced by the values given for it (every combination); an expression without
 * values fails, so that a new form cannot go untested.
 */
async function postedFormActions(dir: string, values: Record<string, string[]>): Promise<string[]> {
  const actions = new Set<string>()
  const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.eta'))
  for (const file of files) {
    const text = await readFile(join(dir, file), 'utf8')
    for (const [, action] of text.matchAll(/<form\b[^>]*method="post"[^>]*action="([^"]*)"/g)) {
      let expanded = [action!]
      for (const [, expression] of action!.matchAll(/<%=\s*(.*?)\s*%>/g)) {
        const options = values[expression!]
        assert.ok(options, `${file}: a form posting to ${action} (add values for ${expression})`)
        expanded = expanded.flatMap((a) => options.map((v) => a.replace(/<%=\s*(.*?)\s*%>/, v)))
      }
      for (const a of expanded) actions.add(a)
    }
  }
  return [...actions].sort()
}
