// `atcr-hold repo export` and `repo import`: the hold's repo as CAR files, for backup,
// restore and moving a hold to another host.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { readRepoCar } from '@atcr/core/car'
import { loadConfigFile, UsageError } from '@atcr/core/cli'
import {
  createIdentityResolver,
  extractAtprotoDocumentData,
  parseDidDocument,
} from '@atcr/core/identity'
import { NSID } from '@atcr/core/lexicons'
import type { HoldConfig } from '../config.ts'
import { holdConfig } from '../config.ts'
import { lockDataDir } from '../data-dir-lock.ts'
import { openDatabase } from '../db/index.ts'
import { loadStoredIdentity } from '../identity.ts'
import { type ImportRecord, openHoldRepo, Sequencer } from '../pds/index.ts'
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

/** What `repo import` was told besides the files. */
export interface RepoImportOptions {
  config?: string
  /** DID document files (JSON), for repos whose DID cannot be resolved any more. */
  didDocument?: string[]
  /** Take captain and crew records from repos of other DIDs too. */
  takeAccessRecords?: boolean
}

/** Captain and crew records say who owns and who may use the hold. */
const ACCESS_COLLECTIONS: ReadonlySet<string> = new Set([NSID.holdCaptain, NSID.holdCrew])

interface VerifiedFile {
  file: string
  did: string
  keySource: string
  taken: ImportRecord[]
  leftOut: ImportRecord[]
}

/**
 * Verifies every file (block hashes, MST, and the commit signature against the `#atproto`
 * key of the repo's DID document: the hold's own, one given with --did-document, or else
 * the resolved one), then upserts all their records in one commit. Captain and crew
 * records of a repo that is not the hold's own are left out unless `takeAccessRecords`.
 * Nothing is written unless every file verifies; the server must be stopped.
 */
export async function repoImport(files: string[], options: RepoImportOptions = {}): Promise<void> {
  const config = await loadConfigFile(holdConfig, options.config)
  const identity = await loadStoredIdentity(config)
  const documents = await readDidDocuments(options.didDocument ?? [])
  const resolver = createIdentityResolver({
    mode: config.server.mode,
    plcUrl: config.identity.plc_directory_url,
  })
  const verified: VerifiedFile[] = []
  try {
    const keyOf = async (did: string): Promise<{ key: string; source: string }> => {
      const given = documents.get(did)
      if (given) return { key: given.key, source: given.file }
      if (did === identity.did) return { key: identity.signingKey.did(), source: 'this hold' }
      try {
        return { key: await resolver.resolveSigningKey(did), source: 'resolved DID document' }
      } catch (error) {
        throw new Error(
          `cannot resolve the DID document of ${did} (${(error as Error).message}); give it with --did-document FILE`,
          { cause: error },
        )
      }
    }
    for (const file of files) {
      verified.push(
        await readVerifiedFile(file, keyOf, identity.did, options.takeAccessRecords ?? false),
      )
    }
  } finally {
    await resolver.close()
  }

  const records = new Map<string, ImportRecord>()
  for (const { taken } of verified) {
    for (const record of taken) records.set(`${record.collection}/${record.rkey}`, record)
  }
  for (const line of importReport(verified)) process.stderr.write(`${line}\n`)

  const lock = await lockDataDir(config.server.data_dir)
  const db = await openDatabase(databasePath(config))
  try {
    await Sequencer.raiseFloor(db.db, restoredSeqFloor())
    const repo = await openHoldRepo({ db, did: identity.did, signingKey: identity.signingKey })
    try {
      const commit = await repo.writer.importRecords([...records.values()])
      process.stderr.write(
        commit
          ? `imported ${records.size} records from ${files.length} file(s) in commit ${commit.cid} (rev ${commit.rev}, firehose seq ${commit.seq})\n`
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

/**
 * The firehose of a restored hold continues above any seq the old host can have handed
 * out: the current Unix time in milliseconds. A hold sequences one event per signed
 * commit (or identity change), far fewer than one per millisecond, so a host that
 * started at seq 1, or itself was restored at an earlier time, stays below it.
 */
function restoredSeqFloor(): number {
  return Date.now()
}

async function readVerifiedFile(
  file: string,
  keyOf: (did: string) => Promise<{ key: string; source: string }>,
  holdDid: string,
  takeAccessRecords: boolean,
): Promise<VerifiedFile> {
  try {
    const bytes = await readFile(file)
    const { did } = await readRepoCar(bytes)
    const { key, source } = await keyOf(did)
    const car = await readRepoCar(bytes, { did, signingKey: key })
    const foreign = did !== holdDid
    const taken: ImportRecord[] = []
    const leftOut: ImportRecord[] = []
    for (const { collection, rkey, value } of car.records) {
      const record = { collection, rkey, value }
      if (foreign && !takeAccessRecords && ACCESS_COLLECTIONS.has(collection)) leftOut.push(record)
      else taken.push(record)
    }
    return { file, did, keySource: source, taken, leftOut }
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error })
  }
}

/** The `#atproto` key of each DID document file, by DID. */
async function readDidDocuments(
  files: string[],
): Promise<Map<string, { key: string; file: string }>> {
  const keys = new Map<string, { key: string; file: string }>()
  for (const file of files) {
    try {
      const value = JSON.parse(await readFile(file, 'utf8')) as { id?: unknown }
      const did = typeof value?.id === 'string' ? value.id : ''
      const { signingKey } = extractAtprotoDocumentData(parseDidDocument(did, value))
      if (!signingKey) throw new Error('the document has no #atproto signing key')
      keys.set(did, { key: signingKey, file })
    } catch (error) {
      throw new UsageError(`--did-document ${file}: ${(error as Error).message}`, { cause: error })
    }
  }
  return keys
}

/** What each file gave: records per collection, each access record, what was left out. */
function importReport(files: VerifiedFile[]): string[] {
  const lines: string[] = []
  for (const { file, did, keySource, taken, leftOut } of files) {
    lines.push(`${file}: repo ${did}, signature verified (key from ${keySource})`)
    const counts = new Map<string, number>()
    for (const record of taken)
      counts.set(record.collection, (counts.get(record.collection) ?? 0) + 1)
    for (const [collection, count] of [...counts].sort()) {
      lines.push(`  took ${count} ${collection}`)
    }
    for (const record of taken.filter((r) => ACCESS_COLLECTIONS.has(r.collection))) {
      lines.push(`  took ${describeRecord(record)}`)
    }
    for (const record of leftOut) {
      lines.push(
        `  left out ${describeRecord(record)} (another DID's; --take-access-records takes it)`,
      )
    }
  }
  return lines
}

function describeRecord({ collection, rkey, value }: ImportRecord): string {
  const who = value.member ?? value.owner
  return `${collection}/${rkey}${typeof who === 'string' ? ` (${who})` : ''}`
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
