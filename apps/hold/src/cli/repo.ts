// `atcr-hold repo export` and `repo import`: the hold's repo as CAR files, for backup,
// restore and moving a hold to another host.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readRepoCar } from '@atcr/core/car'
import { loadConfigFile } from '@atcr/core/cli'
import type { HoldConfig } from '../config.ts'
import { holdConfig } from '../config.ts'
import { lockDataDir } from '../data-dir-lock.ts'
import { openDatabase } from '../db/index.ts'
import { loadStoredIdentity } from '../identity.ts'
import { type ImportRecord, openHoldRepo } from '../pds/index.ts'
import { RepoReader } from '../pds/reader.ts'

const databasePath = (config: HoldConfig) => join(config.server.data_dir, 'hold.sqlite')

/** Streams the repo to stdout as a CAR; reads a consistent snapshot, so the hold may run. */
export async function repoExport(configFile: string | undefined): Promise<void> {
  const config = await loadConfigFile(holdConfig, configFile)
  const identity = await loadStoredIdentity(config)
  const db = await openDatabase(databasePath(config))
  try {
    const car = new RepoReader(db, identity.did).exportCar()
    const progress = process.stderr.isTTY ? progressReporter('exported') : undefined
    let bytes = 0
    for await (const chunk of car) {
      bytes += chunk.length
      progress?.(bytes)
      if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r))
    }
    if (process.stderr.isTTY) process.stderr.write(`\rexported ${bytes} bytes (rev ${car.rev})\n`)
  } finally {
    await db.close()
  }
}

/**
 * Verifies every file (block hashes, MST, and the commit signature when the CAR is this
 * hold's own repo), then upserts all their records in one commit. Nothing is written unless
 * every file verifies; the server must be stopped.
 */
export async function repoImport(files: string[], configFile: string | undefined): Promise<void> {
  const config = await loadConfigFile(holdConfig, configFile)
  const identity = await loadStoredIdentity(config)
  const records = new Map<string, ImportRecord>()
  for (const file of files) {
    for (const record of await readVerifiedRecords(file, identity.did, identity.signingKey.did())) {
      records.set(`${record.collection}/${record.rkey}`, record)
    }
  }

  const lock = await lockDataDir(config.server.data_dir)
  const db = await openDatabase(databasePath(config))
  try {
    const repo = await openHoldRepo({ db, did: identity.did, signingKey: identity.signingKey })
    try {
      const commit = await repo.writer.importRecords([...records.values()])
      process.stderr.write(
        commit
          ? `imported ${records.size} records from ${files.length} file(s) in commit ${commit.cid} (rev ${commit.rev})\n`
          : `nothing to import: all ${records.size} records are already current\n`,
      )
    } finally {
      await repo.close()
    }
  } finally {
    await db.close()
    await lock.release()
  }
}

async function readVerifiedRecords(
  file: string,
  holdDid: string,
  signingKey: string,
): Promise<ImportRecord[]> {
  const bytes = await readFile(file)
  try {
    let car = await readRepoCar(bytes)
    if (car.did === holdDid) car = await readRepoCar(bytes, { did: holdDid, signingKey })
    return car.records.map(({ collection, rkey, value }) => ({ collection, rkey, value }))
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error })
  }
}

function progressReporter(verb: string): (bytes: number) => void {
  let last = 0
  return (bytes) => {
    const now = Date.now()
    if (now - last < 200) return
    last = now
    process.stderr.write(`\r${verb} ${bytes} bytes`)
  }
}
