// The executables as a user runs them: by path (their first line picks `node` from PATH),
// --version, a one-line message on a Node too old for them, and a first `atcr-hold serve`
// with an incomplete config that fails whole before writing anything.
import assert from 'node:assert/strict'
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { access } from 'node:fs/promises'
import { request } from 'node:http'
import { delimiter, dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort, LOOPBACK, makeTempDir, removeTempDir } from '@atcr/testkit'

const root = new URL('../../../', import.meta.url).pathname
const BINS = [
  'apps/hold/bin/atcr-hold',
  'apps/appview/bin/atcr-appview',
  'apps/credential-helper/bin/docker-credential-atcr',
  'apps/credential-helper/bin/atcr',
]
const HOLD = join(root, BINS[0]!)

interface Run {
  child: ChildProcess
  done: Promise<{ code: number | null; stdout: string; stderr: string }>
  output(): string
}

function run(bin: string, args: string[], env: Record<string, string> = {}, nodeDir?: string): Run {
  const child = spawn(bin, args, {
    env: {
      PATH: `${nodeDir ?? dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`,
      HOME: process.env.HOME ?? '/root',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk) => {
    stdout += chunk
  })
  child.stderr?.on('data', (chunk) => {
    stderr += chunk
  })
  const done = once(child, 'close').then(([code]) => ({
    code: code as number | null,
    stdout,
    stderr,
  }))
  return { child, done, output: () => stdout + stderr }
}

/** The machine's own `node` when it is older than 22.18 (the system Node here is 20). */
function oldNodeDir(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim()
      const [major, minor] = version.slice(1).split('.').map(Number)
      if (major! < 22 || (major === 22 && minor! < 18)) return dirname(candidate)
    } catch {
      // not there
    }
  }
  return undefined
}

function status(url: string): Promise<number> {
  return new Promise((resolve) => {
    request(url, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
      .on('error', () => resolve(0))
      .end()
  })
}

async function untilAnswers(child: ChildProcess, url: string, output: () => string) {
  const deadline = Date.now() + 60_000
  while ((await status(url)) !== 200) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the hold did not come up:\n${output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('the executables', () => {
  let dir: string
  before(async () => {
    dir = await makeTempDir('atcr-ops-cli-')
  })
  after(() => removeTempDir(dir))

  it('run by path and print their version', async () => {
    for (const bin of BINS) {
      const { code, stdout, stderr } = await run(join(root, bin), ['--version']).done
      assert.equal(code, 0, `${bin}: ${stderr}`)
      assert.match(stdout.trim(), /^\d+\.\d+\.\d+$/, bin)
    }
  })

  it('say in one line that an old Node is too old, and how to get one', async (t) => {
    const nodeDir = oldNodeDir()
    if (!nodeDir) {
      t.skip('no Node older than 22.18 on this machine')
      return
    }
    for (const bin of BINS) {
      const result: Awaited<Run['done']> = await run(join(root, bin), ['--version'], {}, nodeDir)
        .done
      assert.equal(result.code, 1, bin)
      assert.equal(result.stdout, '')
      const lines: string[] = result.stderr.trim().split('\n')
      assert.equal(lines.length, 1, result.stderr)
      assert.match(lines[0]!, /needs Node\.js 22\.18 or newer, this is \d+\.\d+.*scripts\/env\.sh/)
    }
  })

  it('atcr-hold serve checks its whole config before touching the data dir', async () => {
    const dataDir = join(dir, 'hold')
    const port = await freePort()
    const base = {
      ATCR_HOLD_SERVER_DATA_DIR: dataDir,
      ATCR_HOLD_SERVER_HOST: LOOPBACK,
      ATCR_HOLD_SERVER_PORT: String(port),
      ATCR_HOLD_SERVER_PUBLIC_URL: `http://localhost:${port}`,
      ATCR_HOLD_SERVER_MODE: 'dev',
    }
    const incomplete = await run(HOLD, ['serve'], {
      ...base,
      ATCR_HOLD_IDENTITY_DID_METHOD: 'plc',
      ATCR_HOLD_STORAGE_DRIVER: 's3',
    }).done
    assert.equal(incomplete.code, 2, incomplete.stderr)
    assert.match(incomplete.stderr, /registration\.owner_did: the hold needs an owner DID/)
    assert.match(incomplete.stderr, /ATCR_HOLD_REGISTRATION_OWNER_DID/)
    assert.match(incomplete.stderr, /identity\.rotation_key_path: /)
    assert.match(incomplete.stderr, /storage\.s3\.bucket: /)
    await assert.rejects(access(dataDir), 'the data dir was created')

    // Corrected, the same data dir serves.
    const hold = run(HOLD, ['serve'], {
      ...base,
      ATCR_HOLD_REGISTRATION_OWNER_DID: 'did:plc:ownerownerownerownerowne',
      ATCR_HOLD_LOG_LEVEL: 'warn',
    })
    await untilAnswers(hold.child, `http://${LOOPBACK}:${port}/xrpc/_health`, hold.output)
    hold.child.kill('SIGTERM')
    assert.equal((await hold.done).code, 0)
  })
})
