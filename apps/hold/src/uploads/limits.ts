// What an upload may take on the hold. The bytes of uploads in progress, and of completed
// blobs no push names yet, count against the uploader's quota as the parts arrive (not only
// at the manifest push), every account but
// the owner has a cap on its open uploads and on their bytes, and the last
// `quota.owner_reserve` bytes of free space are the owner's alone. The owner is limited by
// the disk only. A full disk is a 507 StorageFull, never a generic failure.
import { getCaptain } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { unpushedBytesOf, usageOf } from '../layers/index.ts'
import { quotaPolicyOf } from '../quota/index.ts'
import type { ByteSource } from '../storage/index.ts'
import { XrpcError } from '../xrpc/error.ts'
import { inFlightOf, partBytes } from './store.ts'

// Free space is looked at again during a part after a quarter of the room it had left at
// the last look (others write too), between these bounds: each look is a statfs, which
// cost a quarter of the hold's CPU per byte when made every MiB of a 256 MiB part.
const DISK_CHECK_MIN_BYTES = 1024 * 1024
const DISK_CHECK_MAX_BYTES = 64 * 1024 * 1024

export function quotaExceeded(message: string): XrpcError {
  return new XrpcError(403, 'QuotaExceeded', message)
}

/** 507 Insufficient Storage: the hold has no room for the bytes (its disk, or the reserve). */
export function storageFull(message: string): XrpcError {
  return new XrpcError(507, 'StorageFull', `Storage full: ${message}`)
}

/** The bytes being received for one account right now, summed over its parts in progress. */
interface Receiving {
  bytes: number
  /**
   * Bytes moved from being received to stored parts so far: a part that began before such
   * a move (and so did not see it in the stored parts it summed) adds the difference.
   */
  settled: number
  parts: number
}

/**
 * The parts being received, per account, in this process (the hold runs alone on its data
 * dir, so this is every part in flight). Bounded: an account leaves the map with its last
 * part.
 */
export class UploadBudget {
  readonly #accounts = new Map<string, Receiving>()

  enter(did: string): Receiving {
    let account = this.#accounts.get(did)
    if (!account) {
      account = { bytes: 0, settled: 0, parts: 0 }
      this.#accounts.set(did, account)
    }
    account.parts++
    return account
  }

  leave(did: string, account: Receiving): void {
    account.parts--
    if (account.parts === 0) this.#accounts.delete(did)
  }
}

async function isOwner(ctx: HoldContext, did: string): Promise<boolean> {
  return (await getCaptain(ctx)).owner === did
}

/**
 * Whether `did` may send parts straight to storage (presigned URLs the hold never sees):
 * only an account nothing limits, as the hold could not count the bytes.
 */
export async function isUnlimited(ctx: HoldContext, did: string): Promise<boolean> {
  if (await isOwner(ctx, did)) return true
  if (ctx.config.uploads.max_open_bytes_per_account !== null) return false
  return (await quotaPolicyOf(ctx, did)).limit === null
}

/** The most uploads `did` may have open (undefined: no cap, for the owner). */
export async function openUploadCap(ctx: HoldContext, did: string): Promise<number | undefined> {
  if (await isOwner(ctx, did)) return undefined
  await checkFree(ctx, false, 0)
  return ctx.config.uploads.max_open_per_account
}

export function tooManyUploads(cap: number): XrpcError {
  return new XrpcError(
    403,
    'TooManyUploads',
    `An account may have ${cap} uploads open on this hold; complete or abort one first`,
  )
}

/**
 * StorageFull unless `pending` more bytes leave enough free: nothing for the owner, the
 * reserve for anyone else. Storage without a notion of free space (S3) passes. Returns the
 * bytes left above the reserve after `pending` (Infinity without a notion of free space).
 */
async function checkFree(ctx: HoldContext, owner: boolean, pending: number): Promise<number> {
  const free = await ctx.storage.freeSpace()
  if (free === null) return Number.POSITIVE_INFINITY
  const reserve = owner ? 0 : ctx.config.quota.owner_reserve
  if (free - pending >= reserve) return free - pending - reserve
  if (owner) throw storageFull(`${free} bytes are free, ${pending} are needed`)
  throw storageFull(
    `${free} bytes are free and the last ${reserve} are kept for the hold's owner` +
      (pending > 0 ? `; ${pending} more are needed` : ''),
  )
}

function nextDiskCheck(room: number): number {
  return Math.min(Math.max(room / 4, DISK_CHECK_MIN_BYTES), DISK_CHECK_MAX_BYTES)
}

/** A limit on the bytes an account's parts in progress may add, and how to refuse. */
interface Room {
  left: number
  refuse(): XrpcError
}

/**
 * Admits one part of `did`'s upload: refuses it at once when its declared size cannot fit,
 * else counts its bytes as they pass (`through`) and refuses the first byte that does not
 * fit, before storage sees it. Call `settle` once the part's size is recorded and `end`
 * in every case.
 */
export async function admitPart(
  ctx: HoldContext,
  did: string,
  part: { uploadId: string; partNumber: number; size?: number },
): Promise<PartAdmission> {
  // Entered before the stored parts are summed: see `Receiving.settled`.
  const account = ctx.uploadBudget.enter(did)
  const admission = new PartAdmission(ctx, did, account)
  try {
    const owner = await isOwner(ctx, did)
    const rooms: Room[] = []
    if (!owner) {
      const [inFlight, policy] = await Promise.all([
        inFlightOf(ctx.db, did, part),
        quotaPolicyOf(ctx, did),
      ])
      const { limit, tier } = policy
      if (limit !== null) {
        const [usage, unpushed] = await Promise.all([
          usageOf(ctx.db.db, did),
          unpushedBytesOf(ctx.db.db, did),
        ])
        const stored = usage.totalSize
        rooms.push({
          left: limit - stored - unpushed - inFlight.bytes,
          refuse: () =>
            quotaExceeded(
              `Storage quota exceeded: ${tier ? `the ${tier.name} tier allows` : 'the limit is'} ` +
                `${limit} bytes; ${stored} are pushed, ${unpushed} uploaded but not pushed yet ` +
                `and ${inFlight.bytes} in uploads in progress`,
            ),
        })
      }
      const cap = ctx.config.uploads.max_open_bytes_per_account
      if (cap !== null) {
        rooms.push({
          left: cap - inFlight.bytes,
          refuse: () =>
            quotaExceeded(
              `Open uploads may hold ${cap} bytes per account; ${inFlight.bytes} are held already`,
            ),
        })
      }
    }
    await admission.begin(owner, rooms, part.size ?? 0)
    return admission
  } catch (err) {
    admission.end()
    throw err
  }
}

export class PartAdmission {
  readonly #ctx: HoldContext
  readonly #did: string
  readonly #account: Receiving
  readonly #epoch: number
  #owner = false
  #rooms: Room[] = []
  /** Bytes this part counts in `account.bytes`: its declared size, or what arrived. */
  #reserved = 0
  #received = 0
  /** Bytes of this part after which free space is looked at again. */
  #nextDiskCheck = DISK_CHECK_MIN_BYTES
  #ended = false

  constructor(ctx: HoldContext, did: string, account: Receiving) {
    this.#ctx = ctx
    this.#did = did
    this.#account = account
    this.#epoch = account.settled
  }

  async begin(owner: boolean, rooms: Room[], declared: number): Promise<void> {
    this.#owner = owner
    this.#rooms = rooms
    this.#grow(declared)
    this.#nextDiskCheck = nextDiskCheck(await checkFree(this.#ctx, owner, declared))
  }

  /** The source's bytes, counted; throws QuotaExceeded or StorageFull at the first excess. */
  async *through(source: ByteSource): AsyncGenerator<Uint8Array> {
    let sinceDiskCheck = 0
    for await (const chunk of source as AsyncIterable<Uint8Array>) {
      this.#received += chunk.length
      if (this.#received > this.#reserved) this.#grow(this.#received - this.#reserved)
      sinceDiskCheck += chunk.length
      if (sinceDiskCheck >= this.#nextDiskCheck) {
        sinceDiskCheck = 0
        const room = await checkFree(this.#ctx, this.#owner, this.#reserved - this.#received)
        this.#nextDiskCheck = nextDiskCheck(room)
      }
      yield chunk
    }
  }

  /** The part is stored and recorded: `delta` bytes more in the account's stored parts. */
  settle(delta: number): void {
    this.#account.settled += delta
  }

  end(): void {
    if (this.#ended) return
    this.#ended = true
    this.#account.bytes -= this.#reserved
    this.#ctx.uploadBudget.leave(this.#did, this.#account)
  }

  #grow(bytes: number): void {
    this.#reserved += bytes
    this.#account.bytes += bytes
    const used = this.#account.bytes + (this.#account.settled - this.#epoch)
    for (const room of this.#rooms) if (used > room.left) throw room.refuse()
  }
}

/**
 * StorageFull when assembling the listed parts would eat into the reserve (or past the
 * disk): a driver that concatenates writes the blob once more before the parts go. One
 * part is not copied (see the drivers), so it needs no room.
 */
export async function admitCompletion(
  ctx: HoldContext,
  did: string,
  uploadId: string,
  partNumbers: readonly number[],
): Promise<void> {
  const pending = partNumbers.length > 1 ? await partBytes(ctx.db, uploadId, partNumbers) : 0
  await checkFree(ctx, await isOwner(ctx, did), pending)
}
