// ATProto OAuth sign-in and the device flow for real: the testkit's PDS, a real hold, the
// AppView, and Debian's chromium (headless, driven by playwright-core) on the PDS's own
// authorize and consent pages. Then the device secret the browser approved is used by
// skopeo and podman to push and pull, and revoking it in settings refuses the next push.
// The loopback OAuth client is what runs here; the confidential client's metadata is
// checked in web-client-metadata.test.ts (a PDS here cannot fetch an https client_id).
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import {
  approveOnAuthorizePage,
  type ContainerStorage,
  createContainerStorage,
  hasChromium,
  hasCommand,
  launchBrowser,
  run,
  type TestBrowser,
  writeOciImage,
} from '@atcr/testkit'
import { Client, type DidString } from '@atproto/lex-client'
import { type RegistryStack, startRegistryStack } from './registry-harness.ts'

const missing = ['skopeo', 'podman'].filter((c) => !hasCommand(c))
if (!hasChromium()) missing.push('chromium')

interface DeviceCode {
  device_code: string
  user_code: string
  verification_uri: string
  verification_uri_complete: string
  expires_in: number
  interval: number
}

describe('OAuth sign-in, device login and CSRF in a real browser', {
  skip: missing.length > 0 && `missing ${missing.join(', ')}`,
}, () => {
  let stack: RegistryStack
  let browser: TestBrowser
  let dir: string
  let containers: ContainerStorage
  let secret: string
  let layout: string

  const form = (path: string, body: Record<string, string>, headers: Record<string, string> = {}) =>
    fetch(`${stack.url}${path}`, {
      method: 'POST',
      body: new URLSearchParams(body),
      headers,
      redirect: 'manual',
    })
  const pollToken = async (deviceCode: string) => {
    const res = await form('/auth/device/token', {
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
      device_code: deviceCode,
    })
    return { status: res.status, body: (await res.json()) as Record<string, string> }
  }
  const cookieHeader = async () =>
    (await browser.context.cookies(stack.url)).map((c) => `${c.name}=${c.value}`).join('; ')

  before(async () => {
    stack = await startRegistryStack()
    browser = await launchBrowser()
    dir = await mkdtemp(join(tmpdir(), 'atcr-web-oauth-'))
    containers = await createContainerStorage()
    layout = join(dir, 'layout')
    await writeOciImage(layout, {
      tag: 'v1',
      layers: [{ files: [{ path: 'etc/motd', content: 'pushed with a device secret\n' }] }],
    })
  })
  after(async () => {
    await containers?.close()
    await browser?.close()
    await stack?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })
  /** The AppView's log of every test so far (each test's is dropped after it). */
  const logsSoFar: string[] = []
  /** Credentials handed out during the file: none may reach a log. */
  const credentials = new Set<string>()
  afterEach((t) => {
    logsSoFar.push(stack.logs.text())
    stack.logs.flushIfFailed(t as unknown as { passed: boolean; name: string })
  })

  it('signs in with OAuth (granular scopes), consent included, and makes the sailor profile', async () => {
    const page = await browser.newPage()
    await page.goto(`${stack.url}/auth/oauth/login`)
    await page.getByLabel('Your handle').fill('alice.test')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await approveOnAuthorizePage(page, stack.alice, stack.net.pds.url)
    await page.waitForURL(`${stack.url}/`)
    assert.match((await page.textContent('main')) ?? '', /signed in as alice\.test/i)
    const cookie = (await browser.context.cookies(stack.url)).find((c) => c.name === 'atcr_session')
    assert.ok(cookie)
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.sameSite, 'Lax')
    assert.ok(await stack.appview.ctx.oauth.hasSession(stack.alice.did))
    // Tokens are sealed at rest: nothing of the session reads as text in the database.
    const row = await stack.appview.ctx.db.db
      .selectFrom('oauth_session')
      .selectAll()
      .where('did', '=', stack.alice.did)
      .executeTakeFirstOrThrow()
    assert.ok(!Buffer.from(row.sealed).toString('latin1').includes('refresh'))
    const profile = await stack.alice.agent.com.atproto.repo.getRecord({
      repo: stack.alice.did,
      collection: 'io.atcr.sailor.profile',
      rkey: 'self',
    })
    assert.equal((profile.data.value as { defaultHold?: string }).defaultHold, stack.hold.did)
    await page.close()
  })

  it('runs the device flow: pending, slow_down, approval in the browser, the secret once', async () => {
    const started = await form('/auth/device/code', {
      client_name: 'docker-credential-atcr on test',
    })
    assert.equal(started.status, 200)
    const code = (await started.json()) as DeviceCode
    assert.match(code.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/)
    assert.equal(code.verification_uri, `${stack.url}/device`)
    assert.equal(code.verification_uri_complete, `${stack.url}/device?user_code=${code.user_code}`)
    assert.equal(code.expires_in, 600)
    assert.equal(code.interval, 5)

    assert.deepEqual((await pollToken(code.device_code)).body.error, 'authorization_pending')
    const fast = await pollToken(code.device_code)
    assert.equal(fast.status, 400)
    assert.equal(fast.body.error, 'slow_down')

    const page = await browser.newPage()
    await page.goto(
      code.verification_uri_complete.replace(code.user_code, code.user_code.toLowerCase()),
    )
    assert.match((await page.textContent('main')) ?? '', /docker-credential-atcr on test/)
    assert.match((await page.textContent('main')) ?? '', new RegExp(code.user_code))
    await page.getByRole('button', { name: 'Approve' }).click()
    await page.waitForLoadState()
    assert.match((await page.textContent('h1')) ?? '', /Device approved/)
    await page.close()

    const issued = await pollToken(code.device_code)
    assert.equal(issued.status, 200, JSON.stringify(issued.body))
    assert.equal(issued.body.token_type, 'device_secret')
    assert.equal(issued.body.did, stack.alice.did)
    assert.equal(issued.body.handle, 'alice.test')
    secret = issued.body.access_token!
    assert.ok(secret.length > 40)
    credentials.add(secret)
    credentials.add(code.device_code)
    const again = await pollToken(code.device_code)
    assert.equal(again.body.error, 'invalid_grant')
    // Stored only as a hash.
    const rows = await stack.appview.ctx.db.db.selectFrom('device').selectAll().execute()
    assert.ok(rows.every((r) => r.secret_hash !== secret && !r.secret_hash.includes(secret)))
  })

  it('denies a device from the browser: the device hears access_denied', async () => {
    const code = (await (
      await form('/auth/device/code', { client_name: 'stranger' })
    ).json()) as DeviceCode
    const page = await browser.newPage()
    await page.goto(code.verification_uri_complete)
    await page.getByRole('button', { name: 'Deny' }).click()
    await page.waitForLoadState()
    assert.match((await page.textContent('h1')) ?? '', /Device denied/)
    await page.close()
    assert.equal((await pollToken(code.device_code)).body.error, 'access_denied')
  })

  it('pushes with skopeo and podman, and pulls, with the device secret', async () => {
    const name = `${stack.host}/${stack.nameOf(stack.alice, 'device')}`
    const creds = `alice.test:${secret}`
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `oci:${layout}:v1`,
      `docker://${name}:v1`,
    ])
    await containers.podman(['pull', '--tls-verify=false', '--creds', creds, `${name}:v1`])
    await containers.podman(['tag', `${name}:v1`, `${name}:podman`])
    await containers.podman([
      'push',
      '--tls-verify=false',
      '--creds',
      `${stack.alice.did}:${secret}`,
      `${name}:podman`,
    ])
    const inspect = JSON.parse(
      (
        await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--creds',
          creds,
          `docker://${name}:podman`,
        ])
      ).stdout,
    )
    assert.equal(inspect.Layers.length, 1)
  })

  it('refuses cross-site posts to logout, device approval and revocation', async () => {
    const cookie = await cookieHeader()
    const [device] = await stack.appview.ctx.devices.list(stack.alice.did)
    assert.ok(device)
    const code = (await (
      await form('/auth/device/code', { client_name: 'csrf' })
    ).json()) as DeviceCode
    const attempts: [string, Record<string, string>][] = [
      ['/auth/logout', {}],
      ['/device', { user_code: code.user_code, decision: 'approve' }],
      [`/settings/devices/${device.id}/revoke`, {}],
    ]
    for (const [path, body] of attempts) {
      // The session cookie without the CSRF token (as if SameSite were not honoured).
      assert.equal((await form(path, body, { cookie })).status, 403, path)
      // A token from another site's page does not help either.
      assert.equal(
        (await form(path, { ...body, _csrf: 'forged' }, { cookie, origin: 'https://evil.example' }))
          .status,
        403,
        path,
      )
    }
    assert.ok(await stack.appview.ctx.devices.pending(code.user_code))
    assert.equal((await stack.appview.ctx.devices.list(stack.alice.did)).length, 1)
    const home = await fetch(`${stack.url}/`, { headers: { cookie } })
    assert.match(await home.text(), /Signed in/)
  })

  it('revokes the device in settings; the next push is refused', async () => {
    const page = await browser.newPage()
    await page.goto(`${stack.url}/settings`)
    assert.match((await page.textContent('main')) ?? '', /docker-credential-atcr on test/)
    await page.getByRole('button', { name: 'Revoke docker-credential-atcr on test' }).click()
    await page.waitForLoadState()
    assert.match((await page.textContent('main')) ?? '', /Device revoked/)
    await page.close()
    const token = await fetch(`${stack.url}/auth/token?service=${stack.host}`, {
      headers: { authorization: `Basic ${Buffer.from(`alice.test:${secret}`).toString('base64')}` },
    })
    assert.equal(token.status, 401)
    const name = `${stack.host}/${stack.nameOf(stack.alice, 'device')}`
    const push = await run(
      'skopeo',
      [
        'copy',
        '--dest-tls-verify=false',
        '--dest-creds',
        `alice.test:${secret}`,
        `oci:${layout}:v1`,
        `docker://${name}:after`,
      ],
      { check: false },
    )
    assert.notEqual(push.code, 0)
    assert.match(push.stderr, /unauthorized|401|authentication required/i)
  })

  it('signs out with a POST carrying the CSRF token', async () => {
    const page = await browser.newPage()
    await page.goto(`${stack.url}/`)
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.waitForURL(`${stack.url}/`)
    assert.match((await page.textContent('main')) ?? '', /Sign in with your atproto account/)
    await page.goto(`${stack.url}/settings`)
    assert.match(page.url(), /\/auth\/oauth\/login\?return_to=%2Fsettings/)
    await page.close()
  })

  it('signs in with include:io.atcr.authFullApp where the PDS resolves the permission set', async () => {
    const permissionSet = JSON.parse(
      await readFile(
        new URL('../../../lexicons/io/atcr/authFullApp.json', import.meta.url),
        'utf8',
      ),
    ) as { id: string }
    await stack.net.pds.publishLexicons([permissionSet])
    const other = await stack.anotherAppView({ oauth: { permission_set: true } })
    assert.match(other.appview.ctx.oauth.scope, /include:io\.atcr\.authFullApp/)
    const page = await browser.newPage()
    await page.goto(`${other.url}/auth/oauth/login?handle=bob.test&return_to=%2Fsettings`)
    await approveOnAuthorizePage(page, stack.bob, stack.net.pds.url)
    await page.waitForURL(`${other.url}/settings`)
    await page.close()
    // The granted session writes io.atcr records in bob's repository.
    const agent = await other.appview.ctx.sessions.agentFor(stack.bob.did)
    await new Client(agent).putRecord(
      {
        $type: 'io.atcr.sailor.star',
        subject: { did: stack.alice.did, repository: 'app' },
        createdAt: new Date().toISOString(),
      },
      'probe',
      { repo: stack.bob.did as DidString },
    )
  })

  it('wrote no credential of the sign-ins, device login and pushes to any log', async () => {
    credentials.add(stack.alice.appPassword)
    credentials.add(stack.bob.appPassword)
    for (const cookie of await browser.context.cookies(stack.url)) credentials.add(cookie.value)
    const logs = {
      appview: [...logsSoFar, stack.logs.text()].join(''),
      hold: stack.hold.output(),
    }
    assert.ok(logs.appview.includes('/auth/device/token'), 'the device login was logged')
    for (const value of credentials) {
      const needle = value.split('.').at(-1)!
      assert.ok(needle.length >= 16, `a credential of ${needle.length} characters`)
      for (const [name, text] of Object.entries(logs)) {
        assert.ok(!text.includes(needle), `${name} logged a credential (${needle.slice(0, 6)}…)`)
      }
    }
  })

  // Last: it spends the address's sign-in allowance (30 a minute) for the rest of the file.
  it('answers 429 with Retry-After to sign-ins started past the limit, looking nothing up', async () => {
    const tried = () =>
      new Set(
        stack.logs
          .records()
          .filter((r) => r.msg === 'OAuth sign-in could not start')
          .map((r) => r.handle),
      )
    // The sign-in page itself does not count; each sign-in started does.
    const page = await fetch(`${stack.url}/auth/oauth/login`)
    assert.equal(page.status, 200)
    await page.body?.cancel()
    let limited: { handle: string; response: Response } | null = null
    for (let i = 0; !limited && i <= 30; i++) {
      const handle = `nobody${i}.test`
      const response = await fetch(`${stack.url}/auth/oauth/login?handle=${handle}`, {
        redirect: 'manual',
      })
      if (response.status === 429) limited = { handle, response }
      else {
        assert.equal(response.status, 400, `${handle}: an unknown handle`)
        await response.body?.cancel()
        assert.ok(tried().has(handle), `${handle} was looked up`)
      }
    }
    assert.ok(limited, 'no 429 after 31 sign-ins')
    const retryAfter = Number(limited.response.headers.get('retry-after'))
    assert.ok(retryAfter > 0 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    assert.match(await limited.response.text(), /Too many sign-ins from your address/)
    assert.ok(!tried().has(limited.handle), 'the refused sign-in looked nothing up')
  })
})
