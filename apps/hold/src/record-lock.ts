// Read-modify-write of the hold's accounting records (layer records checked against a
// quota, push and pull counters, crew records) runs one task at a time per hold. The repo
// writer already serializes commits; this lock also covers the reads a write depends on,
// so two pushes cannot both pass a quota check that only one of them fits, and two pulls
// cannot both count from the same old value.
import type { HoldContext } from './context.ts'
import { Mutex } from './pds/mutex.ts'

const locks = new WeakMap<object, Mutex>()

/** Runs `task` while holding the accounting lock of the hold `ctx`. */
export function withRecordLock<T>(ctx: Pick<HoldContext, 'repo'>, task: () => Promise<T>) {
  // Keyed by the repo: one per open hold, shared by every context built around it.
  let mutex = locks.get(ctx.repo)
  if (!mutex) {
    mutex = new Mutex()
    locks.set(ctx.repo, mutex)
  }
  return mutex.run(task)
}
