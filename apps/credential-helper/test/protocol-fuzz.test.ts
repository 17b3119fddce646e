// Property-based fuzzing (fast-check) of the credential-helper protocol's stdin: get, store and
// erase with arbitrary input (server URLs, JSON objects with wrong fields, garbage bytes). Each
// run either succeeds as the protocol says or exits 1 with one error line on stdout (where
// Docker reads it), no stack trace, and the credentials file byte for byte as it was.
// Many cases run in process through the same `main` the executables call; a few through the
// real executable. The seed is random per run; fast-check prints it when a property fails.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { main } from '../src/cli.ts'
import type { HelperIo } from '../src/protocol.ts'
import { type Home, makeHome } from './cli-harness.ts'

const HOST = '127.0.0.1:5999'
const SEEDED = { ServerURL: HOST, Username: 'did:plc:alice', Secret: 'secret-a' }

const urlChars = fc.constantFrom(...'aZ09.:/-_@[]%?#\\ \t\n\r\u0000\u00e9htpsHTTPS'.split(''))
const serverUrlArb = fc.oneof(
  fc.string({ unit: urlChars, maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    HOST,
    `http://${HOST}`,
    'atcr.io',
    'ftp://atcr.io',
    'https://user:pw@atcr.io',
    'https://',
    '[::1]:5000',
    'http://[::1',
    'a'.repeat(5000),
  ),
)
const storeInputArb = fc.oneof(
  fc
    .record(
      {
        ServerURL: fc.oneof(serverUrlArb, fc.jsonValue({ maxDepth: 1 })),
        Username: fc.oneof(
          fc.constantFrom('did:plc:bob', 'Bob.Example.com', 'did:', ' ', ''),
          fc.string({ maxLength: 30 }),
          fc.jsonValue({ maxDepth: 1 }),
        ),
        Secret: fc.oneof(fc.string({ maxLength: 30 }), fc.jsonValue({ maxDepth: 1 })),
      },
      { requiredKeys: [] },
    )
    .map((value) => JSON.stringify(value)),
  fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
  fc.string({ unit: 'binary', maxLength: 100 }),
)

type Command = 'get' | 'store' | 'erase'
const caseArb: fc.Arbitrary<[Command, string]> = fc.oneof(
  fc.tuple(fc.constant<Command>('get'), serverUrlArb),
  fc.tuple(fc.constant<Command>('erase'), serverUrlArb),
  fc.tuple(fc.constant<Command>('store'), storeInputArb),
)

/** What the credentials file holds (null: absent). */
async function fileState(path: string): Promise<string | null> {
  return readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null
    throw error
  })
}

function checkOutcome(command: Command, code: number, stdout: string, stderr: string): void {
  assert.ok(code === 0 || code === 1, `exit code ${code}`)
  assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace')
  assert.doesNotMatch(stdout, /\n\s+at /, 'no stack trace')
  if (code === 1) {
    // Docker reads a helper's error from stdout: one line, never empty.
    assert.match(stdout, /^[^\n]+\n$/, `error on stdout: ${JSON.stringify({ stdout, stderr })}`)
  } else if (command === 'get') {
    const answer = JSON.parse(stdout) as Record<string, unknown>
    assert.deepEqual(Object.keys(answer).sort(), ['Secret', 'ServerURL', 'Username'])
  } else {
    assert.equal(stdout, '')
  }
}

describe('credential-helper stdin, fuzzed', () => {
  let home: Home
  before(async () => {
    home = await makeHome()
  })
  after(() => home.close())

  /** Runs `main` in process with a private HOME, as the executable would. */
  async function run(command: Command | 'list', stdin: string) {
    let stdout = ''
    let stderr = ''
    const io: HelperIo = {
      env: { ...home.env },
      readStdin: async () => stdin,
      stdout: (text) => {
        stdout += text
      },
      stderr: (text) => {
        stderr += text
      },
      callerCommandLines: () => [],
    }
    const code = await main('docker-credential-atcr', [command], io)
    return { code, stdout, stderr }
  }

  async function seed(): Promise<string> {
    const stored = await run('store', JSON.stringify(SEEDED))
    assert.equal(stored.code, 0, stored.stdout)
    return (await fileState(home.credentials))!
  }

  it('get, store and erase with any stdin: the answer or one error line, and a failed command writes nothing', async () => {
    const seeded = await seed()
    let failures = 0
    await fc.assert(
      fc.asyncProperty(caseArb, async ([command, stdin]) => {
        await writeFile(home.credentials, seeded, { mode: 0o600 })
        const { code, stdout, stderr } = await run(command, stdin)
        checkOutcome(command, code, stdout, stderr)
        const after = await fileState(home.credentials)
        if (code !== 0 || command === 'get') {
          failures += code === 0 ? 0 : 1
          assert.equal(after, seeded, 'the credentials file is unchanged')
        } else if (command === 'store') {
          const input = JSON.parse(stdin) as { Secret: string }
          assert.ok(after?.includes(JSON.stringify(input.Secret)), 'the secret was stored')
        }
      }),
      { numRuns: 1500 },
    )
    assert.ok(failures > 0)
  })

  it('the real executable: any stdin ends in exit 0 or 1, one error line, no stack trace, nothing written', async () => {
    const seeded = await seed()
    await fc.assert(
      fc.asyncProperty(caseArb, async ([command, stdin]) => {
        await writeFile(home.credentials, seeded, { mode: 0o600 })
        const { code, stdout, stderr } = await home.helper([command], stdin)
        checkOutcome(command, code, stdout, stderr)
        if (code !== 0 || command === 'get') {
          assert.equal(await fileState(home.credentials), seeded)
        }
      }),
      { numRuns: 12 },
    )
  })

  it('hosts named like Object.prototype members are stored, listed, read and erased like any other', async () => {
    // Hosts are lowercased, so these two are the Object.prototype members a host can name.
    for (const host of ['__proto__', 'constructor']) {
      const stored = await run('store', JSON.stringify({ ...SEEDED, ServerURL: host }))
      assert.equal(stored.code, 0, stored.stdout)
      const listed = await run('list', '')
      assert.equal((JSON.parse(listed.stdout) as Record<string, string>)[host], SEEDED.Username)
      assert.ok(Object.keys(JSON.parse(listed.stdout)).includes(host), listed.stdout)
      const got = await run('get', host)
      assert.equal(got.code, 0, got.stdout)
      assert.equal((JSON.parse(got.stdout) as { Secret: string }).Secret, SEEDED.Secret)
      assert.equal((await run('erase', host)).code, 0)
      assert.equal((await run('get', host)).code, 1)
    }
  })

  it('stdin past the 64 KiB bound is refused, nothing written', async () => {
    const seeded = await seed()
    const big = JSON.stringify({ ...SEEDED, Secret: 'x'.repeat(70 * 1024) })
    const { code, stdout, stderr } = await home.helper(['store'], big)
    assert.equal(code, 1)
    assert.match(stdout, /larger than/)
    assert.doesNotMatch(stderr, /\n\s+at /)
    assert.equal(await fileState(home.credentials), seeded)
  })
})
