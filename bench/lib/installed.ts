// The hold and AppView as a deployment runs them: scripts/build's npm packages (compiled
// JavaScript) installed with npm into a prefix, rather than the checkout's TypeScript
// (which Node type-strips as it loads: more memory, see bench/README.md).
import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname

export interface InstalledBins {
  appview: string
  hold: string
}

/** Builds the packages and installs them under `prefix`; returns their executables. */
export async function installApps(prefix: string): Promise<InstalledBins> {
  await run(join(ROOT, 'scripts/build'), [], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })
  const built = join(ROOT, 'build')
  const packages = (await readdir(built))
    .filter((name) => /^atcr-(appview|hold)-.*\.tgz$/.test(name))
    .map((name) => join(built, name))
  if (packages.length !== 2) throw new Error(`scripts/build left ${packages.join(', ')}`)
  await run('npm', ['install', '--global', '--prefix', prefix, '--no-fund', ...packages], {
    maxBuffer: 16 * 1024 * 1024,
  })
  return { appview: join(prefix, 'bin/atcr-appview'), hold: join(prefix, 'bin/atcr-hold') }
}
