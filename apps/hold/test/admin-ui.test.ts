// The hold owner's admin pages for real: the testkit's PLC and PDS, the atcr-hold and
// atcr-appview executables in their own processes, and Debian's chromium (headless,
// playwright-core) signing in with ATProto OAuth on the PDS's own authorize page (the
// hold is a loopback OAuth client). A non-owner is refused; sign-out needs a POST with a
// CSRF token; the owner adds a crew member by handle, who then pushes through the AppView
// with skopeo; GC previews then deletes a planted unreferenced blob; the backup CAR
// verifies and equals `atcr-hold repo export`. Screenshots (light and dark) go to
// test-artifacts/hold-admin/ (git-ignored).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { readRepoCar } from '@atcr/core/car'
import { extractAtprotoDocumentData, parseDidDocument } from '@atcr/core/identity'
import {
  type AppViewProcess,
  approveOnAuthorizePage,
  type HoldProcess,
  hasChromium,
  hasCommand,
  launchBrowser,
  makeTempDir,
  removeTempDir,
  run,
  startAppViewProcess,
  startHoldProcess,
  startNetwork,
  type TestAccount,
  type TestBrowser,
  type TestNetwork,
  writeOciImage,
} from '@atcr/testkit'
import { runHoldCli } from './hold-harness.ts'

type Page = Awaited<ReturnType<TestBrowser['newPage']>>

const VIEWS = new URL('../src/admin/views/', import.meta.url).pathname
const ARTIFACTS = new URL('../../../test-artifacts/hold-admin/', import.meta.url).pathname

const missing = ['skopeo'].filter((c) => !hasCommand(c))
if (!hasChromium()) missing.push('chromium')

describe('the admin pages in a real browser', {
  skip: missing.length > 0 && `missing ${missing.join(', ')}`,
}, () => {
  let net: TestNetwork
  let alice: TestAccount
  let bob: TestAccount
  let carol: TestAccount
  let dave: TestAccount
  let hold: HoldProcess
  let appview: AppViewProcess
  let browser: TestBrowser
  let dir: string
  /** http://127.0.0.1:PORT: where the admin pages are (the loopback OAuth client's origin). */
  let admin: string

  const screenshot = async (page: Page, name: string) => {
    await mkdir(ARTIFACTS, { recursive: true })
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme })
      await page.screenshot({ path: join(ARTIFACTS, `${name}-${colorScheme}.png`), fullPage: true })
    }
    await page.emulateMedia({ colorScheme: null })
  }
  const signIn = async (page: Page, account: TestAccount) => {
    await page.goto(`${admin}/admin`)
    assert.equal(page.url(), `${admin}/admin/auth/login`)
    await page.getByLabel('Your handle or DID').fill(account.handle)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await approveOnAuthorizePage(page, account, net.pds.url)
    await page.waitForLoadState()
  }
  const crewRecords = async () => {
    const res = await fetch(
      `${hold.url}/xrpc/com.atproto.repo.listRecords?repo=${encodeURIComponent(hold.did)}&collection=io.atcr.hold.crew`,
    )
    const body = (await res.json()) as {
      records: { value: { member: string; role: string; permissions: string[] } }[]
    }
    return body.records.map((r) => r.value)
  }
  const captainRecord = async () => {
    const res = await fetch(
      `${hold.url}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(hold.did)}&collection=io.atcr.hold.captain&rkey=self`,
    )
    return ((await res.json()) as { value: Record<string, unknown> }).value
  }
  const requestCrew = async (account: TestAccount) => {
    const { data } = await account.agent.com.atproto.server.getServiceAuth({
      aud: hold.did,
      lxm: 'io.atcr.hold.requestCrew',
    })
    const res = await fetch(`${hold.url}/xrpc/io.atcr.hold.requestCrew`, {
      method: 'POST',
      headers: { authorization: `Bearer ${data.token}`, 'content-type': 'application/json' },
      body: '{}',
    })
    return { status: res.status, body: (await res.json()) as { error?: string } }
  }
  const cookieHeader = async () =>
    (await browser.context.cookies(`${admin}/admin/`)).map((c) => `${c.name}=${c.value}`).join('; ')

  before(async () => {
    dir = await makeTempDir('atcr-admin-ui-')
    net = await startNetwork()
    ;[alice, bob, carol, dave] = (await Promise.all(
      ['alice.test', 'bob.test', 'carol.test', 'dave.test'].map((h) => net.pds.createAccount(h)),
    )) as [TestAccount, TestAccount, TestAccount, TestAccount]
    hold = await startHoldProcess({
      plcUrl: net.plc.url,
      ownerDid: alice.did,
      allowAllCrew: false,
      config: {
        identity: { handle_resolver_url: net.pds.url },
        // Every unreferenced blob may go at once; pull counters never commit mid-test.
        gc: { grace_period: 0 },
        stats: { flush_interval: 86400 },
      },
    })
    admin = `http://127.0.0.1:${hold.port}`
    appview = await startAppViewProcess({
      dataDir: join(dir, 'appview'),
      plcUrl: net.plc.url,
      handleResolverUrl: net.pds.url,
      config: { registry: { default_hold_did: hold.did } },
    })
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await appview?.kill()
    await hold?.close()
    await net?.close()
    if (dir) await removeTempDir(dir)
  })
  afterEach((t) => {
    const test = t as unknown as { passed: boolean }
    if (!test.passed)
      console.error(`hold output:\n${hold?.output()}\nappview:\n${appview?.output()}`)
  })

  it('sends anyone not signed in to the sign-in page, with no query, and sets security headers', async () => {
    for (const path of ['/admin', '/admin/crew', '/admin/gc', '/admin/backup.car']) {
      const res = await fetch(`${admin}${path}`, { redirect: 'manual' })
      assert.equal(res.status, 303, path)
      assert.equal(res.headers.get('location'), '/admin/auth/login', path)
    }
    const login = await fetch(`${admin}/admin/auth/login`)
    assert.equal(login.status, 200)
    const csp = login.headers.get('content-security-policy') ?? ''
    assert.match(csp, /default-src 'none'/)
    assert.doesNotMatch(csp, /unsafe-inline|script-src/)
    assert.equal(login.headers.get('x-content-type-options'), 'nosniff')
    const page = await fetch(`${admin}/admin/static/admin.css`)
    assert.match(await page.text(), /prefers-color-scheme:dark/)
  })

  it('refuses an account that is neither the owner nor a crew admin', async () => {
    const page = await browser.newPage()
    await signIn(page, carol)
    assert.equal((await page.textContent('h1'))?.trim(), 'Not allowed')
    assert.match((await page.textContent('main')) ?? '', /carol\.test/)
    const cookies = await browser.context.cookies(`${admin}/admin/`)
    assert.ok(
      !cookies.some((c) => c.name === 'atcr_hold_admin'),
      'no session for a refused account',
    )
    await page.goto(`${admin}/admin`)
    assert.equal(page.url(), `${admin}/admin/auth/login`)
    await page.close()
    // The PDS remembers carol's sign-in: start the owner's from a clean browser.
    await browser.context.clearCookies()
  })

  it('signs the owner in; sign-out by GET does nothing, by POST without a token is refused', async () => {
    const page = await browser.newPage()
    await signIn(page, alice)
    assert.equal(page.url(), `${admin}/admin`)
    assert.equal((await page.textContent('h1'))?.trim(), 'Overview')
    const session = (await browser.context.cookies(`${admin}/admin/`)).find(
      (c) => c.name === 'atcr_hold_admin',
    )
    assert.ok(session)
    assert.equal(session.httpOnly, true)
    assert.equal(session.sameSite, 'Lax')
    assert.equal(session.path, '/admin')
    await screenshot(page, 'admin-overview')

    const viaGet = await page.goto(`${admin}/admin/auth/logout`)
    assert.equal(viaGet?.status(), 405)
    await page.goto(`${admin}/admin`)
    assert.equal((await page.textContent('h1'))?.trim(), 'Overview', 'still signed in after a GET')

    const noToken = await fetch(`${admin}/admin/auth/logout`, {
      method: 'POST',
      headers: {
        cookie: await cookieHeader(),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: '',
      redirect: 'manual',
    })
    assert.equal(noToken.status, 403)
    const still = await fetch(`${admin}/admin`, {
      headers: { cookie: await cookieHeader() },
      redirect: 'manual',
    })
    assert.equal(still.status, 200, 'still signed in after a POST without a token')
    await page.close()
  })

  it('adds a crew member by handle, who can then push through the AppView', async () => {
    const page = await browser.newPage()
    await page.goto(`${admin}/admin/crew`)
    assert.doesNotMatch((await page.textContent('main')) ?? '', new RegExp(bob.did))
    await page.getByLabel('Handle or DID').fill('bob.test')
    await page.getByRole('button', { name: 'Add to the crew' }).click()
    await page.waitForLoadState()
    assert.match((await page.getByRole('status').textContent()) ?? '', /bob\.test joined the crew/)
    assert.match((await page.textContent('table')) ?? '', new RegExp(bob.did))
    await screenshot(page, 'admin-crew')
    await page.close()

    const crew = (await (
      await fetch(
        `${hold.url}/xrpc/com.atproto.repo.listRecords?repo=${encodeURIComponent(hold.did)}&collection=io.atcr.hold.crew`,
      )
    ).json()) as { records: { value: { member: string; permissions: string[] } }[] }
    const record = crew.records.find((r) => r.value.member === bob.did)
    assert.deepEqual(record?.value.permissions, ['blob:read', 'blob:write'])

    const layout = join(dir, 'layout')
    await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ files: [{ path: 'etc/motd', content: 'pushed by a crew member\n' }] }],
    })
    const name = `${new URL(appview.url).host}/${bob.did.replaceAll(':', '-')}/crewed`
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `bob.test:${bob.appPassword}`,
      `oci:${layout}:v1`,
      `docker://${name}:v1`,
    ])
    const layers = (await (
      await fetch(
        `${hold.url}/xrpc/com.atproto.repo.listRecords?repo=${encodeURIComponent(hold.did)}&collection=io.atcr.hold.layer`,
      )
    ).json()) as { records: { value: { userDid: string } }[] }
    assert.ok(
      layers.records.some((r) => r.value.userDid === bob.did),
      'layer records of the push',
    )
  })

  it('shows the push on the overview: the pusher among the top users, the repository counted', async () => {
    const page = await browser.newPage()
    await page.goto(`${admin}/admin`)
    const users = (
      await page.locator('table[aria-describedby="top-users"] tbody tr').allTextContents()
    ).join('\n')
    assert.match(users, /bob\.test/)
    assert.doesNotMatch(users, /bob\.test[^\n]*\b0 B\b/, 'bob stores some bytes')
    const repositories = await page
      .locator('table[aria-describedby="repositories"] tbody tr')
      .allTextContents()
    const row = repositories.find((r) => r.includes('bob.test/crewed'))
    assert.ok(row, repositories.join('\n'))
    assert.match(row, /crewed\s*1\s*0/, 'one push, no pull')
    assert.match((await page.locator('.cards').textContent()) ?? '', /Crew members\s*2/)
    await page.close()
  })

  it('approves one pending crew request and denies another', async () => {
    for (const account of [carol, dave]) {
      const refused = await requestCrew(account)
      assert.equal(refused.status, 403)
      assert.equal(refused.body.error, 'RegistrationDisabled')
    }
    const page = await browser.newPage()
    await page.goto(`${admin}/admin/crew`)
    await page.getByRole('button', { name: 'Approve carol.test' }).click()
    await page.waitForLoadState()
    assert.match((await page.getByRole('status').textContent()) ?? '', /request approved/)
    await page.getByRole('button', { name: 'Deny dave.test' }).click()
    await page.waitForLoadState()
    assert.match((await page.getByRole('status').textContent()) ?? '', /denied/)
    assert.match((await page.textContent('main')) ?? '', /No one is waiting/)
    await page.close()
    const crew = await crewRecords()
    assert.deepEqual(crew.find((m) => m.member === carol.did)?.permissions, [
      'blob:read',
      'blob:write',
    ])
    assert.ok(!crew.some((m) => m.member === dave.did), 'a denied request writes no record')
    // Approved members may use the hold: asking again says so.
    assert.equal((await requestCrew(carol)).status, 200)
  })

  it('saves the settings in the captain record, and refuses a malformed successor', async () => {
    assert.equal((await captainRecord()).public, true)
    const page = await browser.newPage()
    await page.goto(`${admin}/admin/settings`)
    await page.getByRole('checkbox', { name: /Public:/ }).uncheck()
    await page.getByLabel(/Successor hold/).fill('did:web:next-hold.example.com')
    await page.getByRole('button', { name: 'Save settings' }).click()
    await page.waitForLoadState()
    assert.match((await page.getByRole('status').textContent()) ?? '', /Settings saved/)
    const captain = await captainRecord()
    assert.equal(captain.public, false)
    assert.equal(captain.allowAllCrew, false)
    assert.equal(captain.successor, 'did:web:next-hold.example.com')
    assert.equal(captain.owner, alice.did)
    await screenshot(page, 'admin-settings')

    await page.getByLabel(/Successor hold/).fill('not a did')
    await page.getByRole('button', { name: 'Save settings' }).click()
    await page.waitForLoadState()
    assert.match(
      (await page.getByRole('alert').textContent()) ?? '',
      /must be the DID of another hold/,
    )
    assert.equal((await captainRecord()).successor, 'did:web:next-hold.example.com')
    await page.close()
  })

  it('previews garbage collection, then deletes the one unreferenced blob', async () => {
    const bytes = randomBytes(4096)
    const hex = createHash('sha256').update(bytes).digest('hex')
    const path = join(hold.dataDir, 'blobs', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, bytes)
    const old = new Date(Date.now() - 3_600_000)
    await utimes(path, old, old)

    const page = await browser.newPage()
    await page.goto(`${admin}/admin/gc`)
    await page.getByRole('button', { name: 'Preview' }).click()
    await page.getByRole('heading', { name: 'Preview finished' }).waitFor({ timeout: 60_000 })
    assert.match((await page.textContent('#gc-deleted')) ?? '', /^1 blobs, 4\.0 KiB$/)
    assert.ok(await stat(path), 'a preview deletes nothing')
    await page.getByRole('button', { name: 'Run the collection (delete)' }).click()
    await page.getByRole('heading', { name: 'Collection finished' }).waitFor({ timeout: 60_000 })
    assert.match((await page.textContent('#gc-deleted')) ?? '', /^1 blobs, 4\.0 KiB$/)
    assert.match((await page.textContent('main')) ?? '', new RegExp(`sha256:${hex}`))
    await assert.rejects(stat(path), { code: 'ENOENT' })
    // The pushed blobs are referenced and stay.
    assert.match((await page.textContent('main')) ?? '', /Kept: referenced\s*[1-9]/)
    await screenshot(page, 'admin-gc')
    await page.close()
  })

  it('downloads the repo as a CAR that verifies and equals `atcr-hold repo export`', async () => {
    const page = await browser.newPage()
    await page.goto(`${admin}/admin/gc`)
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download the repository (CAR)' }).click(),
    ])
    const saved = join(dir, 'backup.car')
    await download.saveAs(saved)
    await page.close()
    const car = await readFile(saved)

    const document = parseDidDocument(
      hold.did,
      await (await fetch(`${hold.url}/.well-known/did.json`)).json(),
    )
    const { signingKey } = extractAtprotoDocumentData(document)
    const verified = await readRepoCar(car, { did: hold.did, signingKey })
    assert.equal(verified.signatureVerified, true)
    const crew = verified.records.filter((r) => r.collection === 'io.atcr.hold.crew')
    assert.ok(
      crew.some((r) => r.value.member === bob.did),
      'the backup holds the new crew record',
    )

    const exported = await runHoldCli([
      'repo',
      'export',
      '--config',
      join(hold.dataDir, 'hold.yaml'),
    ])
    assert.equal(exported.code, 0, exported.stderr)
    assert.ok(Buffer.compare(exported.stdout, car) === 0, 'the same bytes as repo export')
  })

  it('sends the security headers with every page, and refuses every form posted without its CSRF token', async () => {
    const cookie = await cookieHeader()
    const get = (path: string) =>
      fetch(`${admin}${path}`, { headers: { cookie }, redirect: 'manual' })
    // [path, status, the view it renders]
    const pages: [string, number, string][] = [
      ['/admin', 200, 'overview'],
      ['/admin/crew', 200, 'crew'],
      ['/admin/settings', 200, 'settings'],
      ['/admin/gc', 200, 'gc'],
      ['/admin/auth/login', 200, 'login'],
      ['/admin/auth/logout', 405, 'logout'],
      ['/admin/no-such-page', 404, 'error'],
    ]
    // Every page view is visited (a new one fails here until it is added above), but the
    // layout, the notice partial, and the refusal page of the test above.
    const views = (await readdir(VIEWS))
      .filter((f) => !['layout.eta', 'notice.eta', 'refused.eta'].includes(f))
      .map((f) => f.replace(/\.eta$/, ''))
    assert.deepEqual([...new Set(pages.map(([, , view]) => view))].sort(), views.sort())
    for (const [path, status] of pages) {
      const res = await get(path)
      assert.equal(res.status, status, path)
      assert.match(res.headers.get('content-type') ?? '', /text\/html/, path)
      const csp = res.headers.get('content-security-policy') ?? ''
      assert.match(csp, /default-src 'none'/, path)
      assert.match(csp, /frame-ancestors 'none'/, path)
      assert.doesNotMatch(csp, /unsafe-inline|script-src/, path)
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
      assert.equal(res.headers.get('referrer-policy'), 'same-origin', path)
      await res.body?.cancel()
    }

    const crewBefore = JSON.stringify(await crewRecords())
    const captainBefore = JSON.stringify(await captainRecord())
    const actions = new Set<string>()
    for (const file of await readdir(VIEWS)) {
      const text = await readFile(join(VIEWS, file), 'utf8')
      for (const [, action] of text.matchAll(/<form\b[^>]*method="post"[^>]*action="([^"]*)"/g)) {
        assert.doesNotMatch(action!, /<%/, `${file}: a form whose action is computed`)
        actions.add(action!)
      }
    }
    assert.ok(actions.size >= 9, [...actions].join(' '))
    const post = (path: string, body: Record<string, string>, headers = {}) =>
      fetch(`${admin}${path}`, {
        method: 'POST',
        body: new URLSearchParams(body),
        headers: { cookie, ...headers },
        redirect: 'manual',
      })
    const fields = { member: dave.did, handle: dave.handle, role: 'admin', successor: '' }
    for (const path of actions) {
      const bare = await post(path, fields)
      assert.equal(bare.status, 403, path)
      await bare.body?.cancel()
      const forged = await post(
        path,
        { ...fields, _csrf: 'forged' },
        { origin: 'https://evil.example' },
      )
      assert.equal(forged.status, 403, path)
      await forged.body?.cancel()
    }
    assert.equal(JSON.stringify(await crewRecords()), crewBefore, 'the crew unchanged')
    assert.equal(JSON.stringify(await captainRecord()), captainBefore, 'the captain unchanged')
    const still = await get('/admin')
    assert.equal(still.status, 200, 'still signed in: the sign-out post was refused too')
    await still.body?.cancel()
  })

  // Last: it spends the address's sign-in allowance (30 a minute) for the rest of the file.
  it('answers 429 with Retry-After to sign-ins started past the limit, asking the PDS nothing', async () => {
    let lookups = 0
    const count = (request: { url?: string }) => {
      if (request.url?.startsWith('/xrpc/com.atproto.identity.resolveHandle')) lookups++
    }
    const page = await fetch(`${admin}/admin/auth/login`)
    const cookie = page.headers
      .getSetCookie()
      .map((c) => c.split(';')[0])
      .join('; ')
    const csrf = /name="_csrf" value="([^"]+)"/.exec(await page.text())?.[1] ?? ''
    const start = (handle: string) =>
      fetch(`${admin}/admin/auth/login`, {
        method: 'POST',
        headers: { cookie, origin: admin, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: csrf, handle }),
        redirect: 'manual',
      })
    net.pds.pds.server!.on('request', count)
    try {
      let limited: Response | null = null
      for (let i = 0; !limited && i <= 30; i++) {
        const before = lookups
        const res = await start(`nobody${i}.test`)
        if (res.status === 429) limited = res
        else {
          assert.equal(res.status, 400, `sign-in ${i}: an unknown handle`)
          await res.body?.cancel()
          assert.ok(lookups > before, `sign-in ${i} looked the handle up`)
        }
      }
      assert.ok(limited, 'no 429 after 31 sign-ins')
      const retryAfter = Number(limited.headers.get('retry-after'))
      assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`)
      assert.match(await limited.text(), /Too many sign-ins from your address/)
      const looked = lookups
      const owner = await start(alice.handle)
      assert.equal(owner.status, 429, 'the owner is held back too')
      await owner.body?.cancel()
      assert.equal(lookups, looked, 'the PDS was not asked')
    } finally {
      net.pds.pds.server!.off('request', count)
    }
  })
})
