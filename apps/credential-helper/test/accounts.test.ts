// The user commands on the accounts file and the clients' config files: status, switch,
// logout, configure-docker; and what login refuses before it asks any server.
import assert from 'node:assert/strict'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Home, makeHome, runWith } from './cli-harness.ts'

const HOST = '127.0.0.1:5999'

let home: Home
beforeEach(async () => {
  home = await makeHome()
})
afterEach(async () => {
  await home.close()
})

const store = (ServerURL: string, Username: string, Secret = 'secret') =>
  home.helper(['store'], JSON.stringify({ ServerURL, Username, Secret }))

describe('status', () => {
  it('not logged in', async () => {
    assert.deepEqual(await home.atcr(['status']), {
      code: 0,
      stdout: 'Not logged in. Run: atcr login [registry]\n',
      stderr: '',
    })
  })

  it('every registry and account, the active ones marked, no secrets', async () => {
    await store(HOST, 'did:plc:alice', 'secret-one')
    await store(HOST, 'bob.test', 'secret-two')
    await store('atcr.io', 'carol.example.com', 'secret-three')
    const result = await home.atcr(['status'])
    assert.equal(result.code, 0)
    const lines = result.stdout
      .trimEnd()
      .split('\n')
      .map((line) => line.replace(/, \d{4}-\d\d-\d\dT[\d:.]+Z$/, ''))
    assert.deepEqual(lines, [
      `${HOST} (default)  http://${HOST}`,
      '    did:plc:alice  stored by a client login',
      '  * bob.test  stored by a client login',
      'atcr.io  https://atcr.io',
      '  * carol.example.com  stored by a client login',
    ])
    assert.doesNotMatch(result.stdout, /secret/)
  })
})

describe('switch', () => {
  it('two accounts: toggles; three: needs a name; a name: that one', async () => {
    await store(HOST, 'did:plc:alice')
    await store(HOST, 'bob.test')
    const active = async () => JSON.parse((await home.helper(['get'], HOST)).stdout).Username
    assert.equal(await active(), 'bob.test')
    assert.deepEqual(await home.atcr(['switch']), {
      code: 0,
      stdout: `Active on ${HOST}: did:plc:alice\n`,
      stderr: '',
    })
    assert.equal(await active(), 'did:plc:alice')
    assert.equal((await home.atcr(['switch'])).stdout, `Active on ${HOST}: bob.test\n`)

    await store(HOST, 'carol.test')
    const unnamed = await home.atcr(['switch'])
    assert.equal(unnamed.code, 2)
    assert.equal(
      unnamed.stderr,
      `atcr: ${HOST} has 3 accounts; name one:\n  did:plc:alice\n  bob.test\n  carol.test\n`,
    )
    assert.equal((await home.atcr(['switch', 'did-plc-alice'])).code, 0)
    assert.equal(await active(), 'did:plc:alice')
    const unknown = await home.atcr(['switch', 'dave.test'])
    assert.deepEqual([unknown.code, unknown.stderr], [1, `atcr: no account dave.test on ${HOST}\n`])
  })

  it('another registry by --registry; not logged in there: exit 1', async () => {
    await store('atcr.io', 'did:plc:alice')
    await store('atcr.io', 'did:plc:bob')
    await store(HOST, 'carol.test')
    const result = await home.atcr(['switch', '--registry', 'atcr.io'])
    assert.equal(result.stdout, 'Active on atcr.io: did:plc:alice\n')
    const none = await home.atcr(['switch', '-r', 'example.org'])
    assert.deepEqual([none.code, none.stderr], [1, 'atcr: not logged in to example.org\n'])
  })
})

describe('logout', () => {
  it('the active account, then the next becomes active; --all; nothing left: exit 1', async () => {
    await store(HOST, 'did:plc:alice')
    await store(HOST, 'bob.test')
    await store(HOST, 'carol.test')
    const first = await home.atcr(['logout'])
    assert.equal(first.code, 0)
    assert.equal(
      first.stdout,
      `Logged out of ${HOST}: carol.test\nActive on ${HOST}: did:plc:alice\n` +
        'The registry still lists the device until you revoke it in its settings page.\n',
    )
    assert.equal((await home.atcr(['logout', 'did:plc:alice'])).code, 0)
    assert.equal(JSON.parse((await home.helper(['get'], HOST)).stdout).Username, 'bob.test')
    assert.equal((await home.atcr(['logout', '--all'])).code, 0)
    const get = await home.helper(['get'], HOST)
    assert.equal(get.stdout, 'credentials not found in native keychain\n')
    const again = await home.atcr(['logout', '--registry', HOST])
    assert.deepEqual([again.code, again.stderr], [1, `atcr: not logged in to ${HOST}\n`])
    // With no registry left, the default is atcr.io again.
    const unnamed = await home.atcr(['logout'])
    assert.deepEqual([unnamed.code, unnamed.stderr], [1, 'atcr: not logged in to atcr.io\n'])
  })
})

describe('configure-docker', () => {
  it('adds credHelpers to Docker config and the containers auth file, keeps the rest, backs up first', async () => {
    const dockerDir = join(home.dir, '.docker')
    await mkdir(dockerDir)
    const original = `${JSON.stringify(
      {
        auths: { 'ghcr.io': { auth: 'dXNlcjpwYXNz' } },
        credsStore: 'desktop',
        credHelpers: { 'gcr.io': 'gcloud' },
        psFormat: 'table {{.ID}}',
      },
      null,
      '\t',
    )}\n`
    await writeFile(join(dockerDir, 'config.json'), original, { mode: 0o644 })
    const result = await home.atcr(['configure-docker', HOST])
    assert.equal(result.code, 0, result.stderr)
    const dockerConfig = JSON.parse(await readFile(join(dockerDir, 'config.json'), 'utf8'))
    assert.deepEqual(dockerConfig, {
      auths: { 'ghcr.io': { auth: 'dXNlcjpwYXNz' } },
      credsStore: 'desktop',
      credHelpers: { 'gcr.io': 'gcloud', [HOST]: 'atcr' },
      psFormat: 'table {{.ID}}',
    })
    const backups = (await readdir(dockerDir)).filter((name) => name.endsWith('.bak'))
    assert.equal(backups.length, 1)
    assert.equal(await readFile(join(dockerDir, backups[0]!), 'utf8'), original)

    const authFile = join(home.dir, '.config', 'containers', 'auth.json')
    assert.deepEqual(JSON.parse(await readFile(authFile, 'utf8')), {
      credHelpers: { [HOST]: 'atcr' },
    })
    assert.equal(
      result.stdout,
      `${join(dockerDir, 'config.json')}: credHelpers["${HOST}"] = "atcr" (backup: ${join(dockerDir, backups[0]!)})\n` +
        `${authFile}: credHelpers["${HOST}"] = "atcr"\n`,
    )

    const again = await home.atcr(['configure-docker', HOST])
    assert.equal(
      again.stdout,
      `${join(dockerDir, 'config.json')}: already uses atcr for ${HOST}\n${authFile}: already uses atcr for ${HOST}\n`,
    )
    assert.equal((await readdir(dockerDir)).filter((name) => name.endsWith('.bak')).length, 1)
  })

  it('DOCKER_CONFIG, REGISTRY_AUTH_FILE and --authfile are honoured; the default registry is the remembered one', async () => {
    await store(HOST, 'did:plc:alice')
    const dockerDir = join(home.dir, 'elsewhere')
    const authFile = join(home.dir, 'auth', 'podman.json')
    const viaEnv = await home.atcr(['configure-docker'], undefined, {
      DOCKER_CONFIG: dockerDir,
      REGISTRY_AUTH_FILE: authFile,
    })
    assert.equal(viaEnv.code, 0, viaEnv.stderr)
    assert.deepEqual(JSON.parse(await readFile(join(dockerDir, 'config.json'), 'utf8')), {
      credHelpers: { [HOST]: 'atcr' },
    })
    assert.deepEqual(JSON.parse(await readFile(authFile, 'utf8')), {
      credHelpers: { [HOST]: 'atcr' },
    })
    const named = join(home.dir, 'named.json')
    await home.atcr(['configure-docker', 'atcr.io', '--authfile', named], undefined, {
      DOCKER_CONFIG: dockerDir,
    })
    assert.deepEqual(JSON.parse(await readFile(named, 'utf8')), {
      credHelpers: { 'atcr.io': 'atcr' },
    })
    const noContainers = await home.atcr(
      ['configure-docker', 'example.org', '--no-containers'],
      undefined,
      {
        DOCKER_CONFIG: dockerDir,
      },
    )
    assert.equal(noContainers.stdout.split('\n').filter(Boolean).length, 1)
  })

  it('a config file that is not JSON: exit 1, file untouched, no backup', async () => {
    const dockerDir = join(home.dir, '.docker')
    await mkdir(dockerDir)
    await writeFile(join(dockerDir, 'config.json'), '{ broken')
    const result = await home.atcr(['configure-docker', HOST])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /config\.json is not valid JSON .*; it was left unchanged\n$/)
    assert.equal(await readFile(join(dockerDir, 'config.json'), 'utf8'), '{ broken')
    assert.deepEqual(await readdir(dockerDir), ['config.json'])
  })
})

describe('login, before any server is asked', () => {
  it('a registry that is no host: usage error, exit 2', async () => {
    const result = await home.atcr(['login', 'ftp://x'])
    assert.deepEqual(
      [result.code, result.stderr],
      [2, 'atcr: not a registry host or URL: "ftp://x"\n'],
    )
  })

  it('a corrupted credentials file: refused before the device flow starts', async () => {
    await mkdir(join(home.dir, '.config', 'atcr'), { recursive: true })
    await writeFile(home.credentials, 'nope', { mode: 0o600 })
    const result = await home.atcr(['login', '127.0.0.1:1'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^atcr: credentials file .* is corrupted/)
  })

  it('a registry nobody answers on: exit 1 with the reason', async () => {
    const result = await home.helper(['login', '127.0.0.1:1'])
    assert.equal(result.code, 1)
    assert.match(
      result.stderr,
      /^docker-credential-atcr: cannot reach http:\/\/127\.0\.0\.1:1\/auth\/device\/code: /,
    )
  })
})

describe('scripts/install-cli', () => {
  it('writes wrappers that run the helper with the project Node, whatever node is first on PATH', async () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url))
    const binDir = join(home.dir, 'bin')
    const installed = await runWith('bash', [join(root, 'scripts/install-cli'), binDir], {
      env: { ...home.env },
    })
    assert.equal(installed.code, 0, installed.stderr)
    // Only the wrappers and the system's directories on PATH (Debian's node is 20).
    const env = {
      HOME: home.dir,
      XDG_CONFIG_HOME: join(home.dir, '.config'),
      PATH: `${binDir}:/usr/bin:/bin`,
    }
    const version = await runWith('docker-credential-atcr', ['version'], { env })
    assert.deepEqual(version, {
      code: 0,
      stdout: 'docker-credential-atcr (ATCR) 0.1.0\n',
      stderr: '',
    })
    const status = await runWith('atcr', ['status'], { env })
    assert.equal(status.stdout, 'Not logged in. Run: atcr login [registry]\n')
  })
})
