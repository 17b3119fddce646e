// CNCF Distribution (Debian's `docker-registry`), the reference registry: filesystem
// storage in a temporary folder, bound to 127.0.0.1, no auth, errors-only logging.
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { freePort } from '@atcr/testkit'
import { spawnLogged, stopChild, waitForUrl } from './processes.ts'

export interface Distribution {
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `127.0.0.1:PORT`, as image references name it. */
  host: string
  pid: number
  output(): string
  close(): Promise<void>
}

/** `docker-registry --version`, e.g. `github.com/docker/distribution 2.8.2+ds1`. */
export function distributionVersion(): string {
  const result = spawnSync('docker-registry', ['--version'], { encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim().replace(/^docker-registry\s+/, '') : 'unknown'
}

/** Starts `docker-registry serve CONFIG` with its storage under `work`; close() removes it. */
export async function startDistribution(work: string): Promise<Distribution> {
  const port = await freePort()
  const root = await mkdtemp(join(work, 'distribution-'))
  const config = join(root, 'distribution.yml')
  // YAML is a superset of JSON.
  await writeFile(
    config,
    JSON.stringify({
      version: 0.1,
      log: { level: 'error' },
      storage: { filesystem: { rootdirectory: join(root, 'storage') } },
      http: { addr: `127.0.0.1:${port}` },
    }),
  )
  const { child, output } = spawnLogged('docker-registry', ['serve', config])
  const close = async () => {
    await stopChild(child)
    await rm(root, { recursive: true, force: true })
  }
  try {
    await waitForUrl(`http://127.0.0.1:${port}/v2/`, child, output)
  } catch (error) {
    await close()
    throw error
  }
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    pid: child.pid!,
    output,
    close,
  }
}
