// One process at a time owns a hold's data dir: the server while it runs, or an offline
// CLI command such as `repo import`. The lock file names the owner's pid; a lock left by
// a process that no longer exists is taken over.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError'
  readonly pid: number
  constructor(dataDir: string, pid: number) {
    super(`the data dir ${dataDir} is in use by a running hold (pid ${pid}); stop it first`)
    this.pid = pid
  }
}

export interface DataDirLock {
  release(): Promise<void>
}

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true })
  const path = join(dataDir, 'hold.lock')
  for (;;) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' })
      return { release: () => rm(path, { force: true }) }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(pid) && pid !== process.pid && isAlive(pid)) {
      throw new DataDirLockedError(dataDir, pid)
    }
    await rm(path, { force: true })
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
