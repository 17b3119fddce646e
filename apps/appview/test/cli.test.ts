import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { appviewConfig } from '../src/config.ts'

const BIN = new URL('../bin/atcr-appview', import.meta.url).pathname
const EXAMPLE = new URL('../../../config-appview.example.yaml', import.meta.url).pathname

function run(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('atcr-appview CLI', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-appview-cli-'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('config init prints every option with its default, as config-appview.example.yaml', async () => {
    const printed = await run(['config', 'init'])
    assert.equal(printed.code, 0, printed.stderr)
    assert.equal(printed.stdout, await readFile(EXAMPLE, 'utf8'))
    const file = join(dir, 'appview.yaml')
    assert.equal((await run(['config', 'init', file])).code, 0)
    assert.deepEqual(appviewConfig.load({ file, env: {} }), appviewConfig.defaults())
    const again = await run(['config', 'init', file])
    assert.equal(again.code, 2)
    assert.match(again.stderr, /exists; use --force/)
  })

  it('a bad config value exits 2 naming its YAML path or variable', async () => {
    const file = join(dir, 'bad.yaml')
    await writeFile(file, 'registry:\n  upload_part_size: 1024\n')
    const fromFile = await run(['serve', '--config', file])
    assert.equal(fromFile.code, 2)
    assert.match(fromFile.stderr, /registry\.upload_part_size/)
    const fromEnv = await run(['serve'], { ATCR_APPVIEW_SERVER_MODE: 'insecure' })
    assert.equal(fromEnv.code, 2)
    assert.match(fromEnv.stderr, /ATCR_APPVIEW_SERVER_MODE/)
    assert.equal((await run(['serve', '--config', join(dir, 'missing.yaml')])).code, 2)
  })

  it('every command has --help', async () => {
    for (const args of [[], ['serve'], ['config', 'init']]) {
      const help = await run([...args, '--help'])
      assert.equal(help.code, 0, `${args.join(' ')} --help`)
      assert.match(help.stdout, /Usage: atcr-appview/)
    }
  })
})
