// `atcr-hold gc [--dry-run] [--json]`: garbage collection from the command line. It takes
// no data dir lock: it writes no records (it reads references, then deletes blobs), so it
// may run beside a serving hold; see gc/index.ts for what keeps that safe.
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfigFile, UsageError } from '@atcr/core/cli'
import { holdConfig } from '../config.ts'
import { storageConfig } from '../context.ts'
import { openDatabase } from '../db/index.ts'
import { collectGarbage, type GcReport } from '../gc/index.ts'
import { loadStoredIdentity } from '../identity.ts'
import { createStorageDriver } from '../storage/index.ts'

export interface GcCommandOptions {
  config?: string
  dryRun?: boolean
  json?: boolean
}

/** Runs a collection; fails (exit 1) when some blob could not be deleted. */
export async function gcCommand(options: GcCommandOptions): Promise<void> {
  const config = await loadConfigFile(holdConfig, options.config)
  const path = join(config.server.data_dir, 'hold.sqlite')
  // A missing or foreign database would mark nothing and so sweep every old blob: refuse.
  await access(path).catch(() => {
    throw new UsageError(`no hold database at ${path}: check server.data_dir`)
  })
  const identity = await loadStoredIdentity(config)
  const database = await openDatabase(path)
  try {
    const root = await database.db.selectFrom('repo_root').select('did').executeTakeFirst()
    if (root?.did !== identity.did) {
      throw new UsageError(
        `${path} holds ${root ? `the repo of ${root.did}` : 'no repo'}, not of ${identity.did}`,
      )
    }
    const storage = await createStorageDriver(storageConfig(config))
    try {
      const report = await collectGarbage(
        { db: database.db, storage, gracePeriod: config.gc.grace_period },
        { dryRun: options.dryRun ?? false },
      )
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : describe(report))
      if (report.failed.length > 0) {
        throw new Error(`${report.failed.length} blob(s) could not be deleted; run gc again`)
      }
    } finally {
      await storage.close()
    }
  } finally {
    await database.close()
  }
}

/** The report for people: one line per blob, then a summary. */
export function describe(report: GcReport): string {
  const verb = report.dryRun ? 'would delete' : 'deleted'
  const lines = report.deleted.map(
    (blob) => `${verb} ${blob.digest} ${blob.size} bytes (written ${blob.modifiedAt})`,
  )
  for (const failure of report.failed) {
    lines.push(`failed to delete ${failure.digest}: ${failure.error}`)
  }
  const kept = [
    `${report.keptReferenced} referenced`,
    `${report.keptUploading} uploading`,
    `${report.keptRecent} younger than ${report.gracePeriodSeconds}s`,
    ...(report.keptAtRecheck > 0 ? [`${report.keptAtRecheck} referenced at the last check`] : []),
  ].join(', ')
  const total = `${report.deleted.length} of ${report.blobsScanned} blobs`
  const bytes = `${report.reclaimedBytes} bytes (${humanBytes(report.reclaimedBytes)})`
  lines.push(
    report.dryRun
      ? `dry run: ${total} would be deleted, ${bytes} reclaimed; kept ${kept}`
      : `${total} deleted, ${bytes} reclaimed; kept ${kept}`,
  )
  return `${lines.join('\n')}\n`
}

function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`
}
