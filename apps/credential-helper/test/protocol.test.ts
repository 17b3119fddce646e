// Golden tests of the Docker credential-helper protocol as clients drive it: the real
// executable, stdin in, exact stdout and exit code out; plus the credentials file when it
// is missing, corrupted or readable by others.
import assert from 'node:assert/strict'
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { HELPER_BIN, type Home, makeHome, runWith } from './cli-harness.ts'

const NOT_FOUND = 'credentials not found in native keychain\n'
const HOST = '127.0.0.1:5999'

let home: Home
beforeEach(async () => {
  home = await makeHome()
})
afterEach(async () => {
  await home.close()
})

const store = (ServerURL: string, Username: string, Secret: string) =>
  home.helper(['store'], JSON.stringify({ ServerURL, Username, Secret }))

describe('version', () => {
  it('prints the helper and its version, exit 0', async () => {
    const result = await home.helper(['version'])
    assert.deepEqual(result, {
      code: 0,
      stdout: 'docker-credential-atcr (ATCR) 0.1.0\n',
      stderr: '',
    })
  })
})

describe('get', () => {
  it('an unknown server: exactly the not-found message on stdout, exit 1, a one-line hint on stderr', async () => {
    const result = await home.helper(['get'], 'atcr.io\n')
    assert.equal(result.stdout, NOT_FOUND)
    assert.equal(result.code, 1)
    assert.equal(
      result.stderr,
      'docker-credential-atcr: not logged in to atcr.io; run: docker-credential-atcr login atcr.io\n',
    )
  })

  it('a stored server: {ServerURL, Username, Secret} with the ServerURL as asked', async () => {
    assert.equal((await store(HOST, 'did:plc:alice', 'secret-a')).code, 0)
    for (const asked of [HOST, `http://${HOST}`, `https://${HOST}/v1/`]) {
      const result = await home.helper(['get'], `${asked}\n`)
      assert.equal(result.code, 0, result.stdout)
      assert.equal(
        result.stdout,
        `${JSON.stringify({ ServerURL: asked, Username: 'did:plc:alice', Secret: 'secret-a' })}\n`,
      )
      assert.equal(result.stderr, '')
    }
    const other = await home.helper(['get'], '127.0.0.1:6000')
    assert.deepEqual([other.code, other.stdout], [1, NOT_FOUND])
  })

  it('empty stdin: "no credentials server URL", exit 1, at once', async () => {
    const started = Date.now()
    const result = await home.helper(['get'], '')
    assert.deepEqual([result.code, result.stdout], [1, 'no credentials server URL\n'])
    assert.ok(Date.now() - started < 5000)
  })

  it('malformed stdin: two lines, or something that is no host', async () => {
    const two = await home.helper(['get'], 'a.example\nb.example\n')
    assert.deepEqual([two.code, two.stdout], [1, 'expected one server URL on stdin\n'])
    const junk = await home.helper(['get'], 'ftp://user:pw@x\n')
    assert.deepEqual(
      [junk.code, junk.stdout],
      [1, 'not a registry host or URL: "ftp://user:pw@x"\n'],
    )
  })

  it('picks the account named in the calling command line, else the active one', async () => {
    await store(HOST, 'did:plc:alice', 'secret-a')
    await store(HOST, 'bob.test', 'secret-b')
    // Called from a shell whose own command line carries the image reference, as
    // `docker push HOST/did-plc-alice/app:1` calls the helper.
    const viaCaller = async (...args: string[]) =>
      runWith('sh', ['-c', `printf '%s' "${HOST}" | "${HELPER_BIN}" get; exit $?`, 'sh', ...args], {
        env: home.env,
      })
    const usernameOf = (result: { stdout: string }) => JSON.parse(result.stdout).Username
    assert.equal(
      usernameOf(await viaCaller('push', `${HOST}/did-plc-alice/app:1`)),
      'did:plc:alice',
    )
    assert.equal(
      usernameOf(await viaCaller('copy', `docker://${HOST}/did:plc:alice/app`)),
      'did:plc:alice',
    )
    assert.equal(usernameOf(await viaCaller('pull', `${HOST}/Bob.Test/app`)), 'bob.test')
    // Nobody named, or someone without an account here: the active account (the last stored).
    assert.equal(usernameOf(await viaCaller('pull', `${HOST}/carol.test/app`)), 'bob.test')
    assert.equal(usernameOf(await viaCaller('login', HOST)), 'bob.test')
  })
})

describe('store', () => {
  it('writes a 0600 file in a 0700 directory; a second store of the same user replaces the secret', async () => {
    assert.deepEqual(await store(HOST, 'did:plc:alice', 'one'), { code: 0, stdout: '', stderr: '' })
    await store(HOST, 'did:plc:alice', 'two')
    assert.equal((await stat(home.credentials)).mode & 0o777, 0o600)
    assert.equal((await stat(dirname(home.credentials))).mode & 0o777, 0o700)
    const data = JSON.parse(await readFile(home.credentials, 'utf8'))
    assert.equal(data.registries[HOST].accounts.length, 1)
    assert.equal(data.registries[HOST].accounts[0].secret, 'two')
    assert.equal(data.registries[HOST].url, `http://${HOST}`)
  })

  it('malformed stdin: a message on stdout, exit 1, nothing written', async () => {
    const cases: [string, string][] = [
      ['not json', 'store expects JSON on stdin'],
      ['[1]', 'store expects a JSON object {ServerURL, Username, Secret}'],
      ['{"Username":"u","Secret":"s"}', 'no credentials server URL'],
      [`{"ServerURL":"${HOST}","Secret":"s"}`, 'no credentials username'],
      [`{"ServerURL":"${HOST}","Username":"u"}`, 'no credentials secret'],
      ['', 'store expects JSON on stdin'],
    ]
    for (const [input, message] of cases) {
      const result = await home.helper(['store'], input)
      assert.equal(result.code, 1, input)
      assert.ok(result.stdout.startsWith(message), `${input}: ${result.stdout}`)
    }
    await assert.rejects(stat(home.credentials), { code: 'ENOENT' })
  })
})

describe('erase and list', () => {
  it('list: {} without a file; host → active username; erase forgets a registry', async () => {
    assert.deepEqual(await home.helper(['list']), { code: 0, stdout: '{}\n', stderr: '' })
    await store(HOST, 'did:plc:alice', 'a')
    await store('atcr.io', 'alice.example.com', 'b')
    assert.equal(
      (await home.helper(['list'])).stdout,
      `${JSON.stringify({ [HOST]: 'did:plc:alice', 'atcr.io': 'alice.example.com' })}\n`,
    )
    assert.deepEqual(await home.helper(['erase'], `${HOST}\n`), { code: 0, stdout: '', stderr: '' })
    assert.equal(
      (await home.helper(['list'])).stdout,
      `${JSON.stringify({ 'atcr.io': 'alice.example.com' })}\n`,
    )
    const again = await home.helper(['get'], HOST)
    assert.deepEqual([again.code, again.stdout], [1, NOT_FOUND])
    const unknown = await home.helper(['erase'], HOST)
    assert.deepEqual([unknown.code, unknown.stdout], [1, NOT_FOUND])
    const empty = await home.helper(['erase'], '')
    assert.deepEqual([empty.code, empty.stdout], [1, 'no credentials server URL\n'])
  })
})

describe('the credentials file', () => {
  const writeRaw = async (text: string, mode = 0o600) => {
    await mkdir(dirname(home.credentials), { recursive: true, mode: 0o700 })
    await writeFile(home.credentials, text, { mode })
    await chmod(home.credentials, mode)
  }

  it('corrupted: every command says so and names the file; nothing overwrites it', async () => {
    for (const garbage of [
      '{"version": 1, "registries": ',
      '{"version": 2, "registries": {}}',
      '{"version":1,"registries":{"h":{"url":"x","active":null,"accounts":[{"secret":1}]}}}',
    ]) {
      await writeRaw(garbage)
      for (const [args, stdin] of [
        [['get'], HOST],
        [['list'], ''],
        [['erase'], HOST],
        [['store'], JSON.stringify({ ServerURL: HOST, Username: 'did:plc:a', Secret: 's' })],
      ] as const) {
        const result = await home.helper([...args], stdin)
        assert.equal(result.code, 1, `${args}: ${result.stdout}`)
        assert.match(
          result.stdout,
          /^credentials file .*credentials\.json is corrupted \(.+\); it was left as it is: fix it, or move it away and log in again\n$/,
        )
      }
      const status = await home.atcr(['status'])
      assert.equal(status.code, 1)
      assert.match(status.stderr, /^atcr: credentials file .* is corrupted/)
      assert.equal(await readFile(home.credentials, 'utf8'), garbage)
    }
  })

  it('readable by others: refused with the chmod to run, and left as it is', async () => {
    await store(HOST, 'did:plc:alice', 'secret')
    const before = await readFile(home.credentials, 'utf8')
    await chmod(home.credentials, 0o644)
    const result = await home.helper(['get'], HOST)
    assert.equal(result.code, 1)
    assert.equal(
      result.stdout,
      `credentials file ${home.credentials} is accessible by other users (mode 0644); it holds secrets: run \`chmod 600 ${home.credentials}\`\n`,
    )
    const stored = await store(HOST, 'did:plc:bob', 'other')
    assert.equal(stored.code, 1)
    assert.equal(await readFile(home.credentials, 'utf8'), before)
    assert.equal((await stat(home.credentials)).mode & 0o777, 0o644)
    await chmod(home.credentials, 0o600)
    assert.equal((await home.helper(['get'], HOST)).code, 0)
  })

  it('missing: get fails fast with the hint, list is empty, store creates it', async () => {
    const result = await home.helper(['get'], 'atcr.io')
    assert.deepEqual([result.code, result.stdout], [1, NOT_FOUND])
    assert.equal((await home.helper(['list'])).stdout, '{}\n')
    assert.equal((await store('atcr.io', 'did:plc:a', 's')).code, 0)
    assert.equal((await stat(home.credentials)).mode & 0o777, 0o600)
  })
})
