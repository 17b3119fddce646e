// The machine's physical limits, measured in the same run as the registries so that their
// numbers can be read against them: sha256 in Node on one core, HTTP over loopback (curl
// sending a file to a bare node:http server that drops it), disk writes with fdatasync.
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from '@atcr/testkit'
import { stopChild } from '../lib/processes.ts'
import { createStampedBlob, MiB } from './images.ts'

export interface Limits {
  mib: number
  /** MiB/s of each repeat. */
  sha256: number[]
  loopbackHttp: number[]
  diskFdatasync: number[]
}

const SINK = new URL('./http-sink.ts', import.meta.url).pathname

async function timed(action: () => Promise<unknown> | unknown): Promise<number> {
  const start = performance.now()
  await action()
  return (performance.now() - start) / 1000
}

export async function measureLimits(work: string, mib: number, repeats = 3): Promise<Limits> {
  const limits: Limits = { mib, sha256: [], loopbackHttp: [], diskFdatasync: [] }
  const block = randomBytes(MiB)
  const file = await createStampedBlob(join(work, 'limits.bin'), mib * MiB)
  const sink = spawn(process.execPath, [SINK], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    const [portLine] = (await once(sink.stdout!, 'data')) as [Buffer]
    const url = `http://127.0.0.1:${portLine.toString().trim()}/`
    for (let i = 0; i < repeats; i++) {
      const hashSeconds = await timed(() => {
        const hash = createHash('sha256')
        for (let n = 0; n < mib; n++) hash.update(block)
        hash.digest()
      })
      limits.sha256.push(mib / hashSeconds)

      const httpSeconds = await timed(async () => {
        const result = await run('curl', [
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '-T',
          file.path,
          '-H',
          'Expect:',
          url,
        ])
        if (result.stdout.trim() !== '201') throw new Error(`http sink: ${result.stdout}`)
      })
      limits.loopbackHttp.push(mib / httpSeconds)

      const path = join(work, 'limits-disk.bin')
      const diskSeconds = await timed(async () => {
        const handle = await open(path, 'w')
        try {
          for (let n = 0; n < mib; n++) await handle.write(block)
          await handle.datasync()
        } finally {
          await handle.close()
        }
      })
      await rm(path, { force: true })
      limits.diskFdatasync.push(mib / diskSeconds)
    }
  } finally {
    await stopChild(sink)
    await rm(file.path, { force: true })
  }
  return limits
}
