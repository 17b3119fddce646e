// A small filesystem of its own (tmpfs) for the disk-full tests: writes past its size fail
// with ENOSPC as on a full disk, and its free space is what statfs says. Mounting needs
// root (CAP_SYS_ADMIN).
import { execFile } from 'node:child_process'
import { mkdtemp, rmdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface SmallFilesystem {
  /** The mount point. */
  dir: string
  /** Unmounts it (everything using it must be stopped first), then removes the mount point. */
  close(): Promise<void>
}

const COMMAND_TIMEOUT_MS = 30_000

function command(file: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || error.message}`))
      else resolve()
    })
  })
}

/** Mounts a tmpfs of `bytes` on a new temp dir; close it in an `after` hook. */
export async function mountSmallFilesystem(bytes: number): Promise<SmallFilesystem> {
  const dir = await mkdtemp(join(tmpdir(), 'atcr-smallfs-'))
  try {
    await command('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir])
  } catch (error) {
    await rmdir(dir)
    throw error
  }
  let closed = false
  return {
    dir,
    close: async () => {
      if (closed) return
      closed = true
      // Unmount first, then remove: removing the mount point of a live mount fails (EBUSY).
      // A lazy unmount (-l) is the fallback when something still holds a file open: it
      // detaches at once and never hangs.
      try {
        await command('umount', [dir])
      } catch {
        await command('umount', ['-l', dir])
      }
      await rmdir(dir)
    },
  }
}
