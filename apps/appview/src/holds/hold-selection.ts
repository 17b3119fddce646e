// Which hold a push goes to (the user's io.atcr.sailor.profile defaultHold, else the
// AppView's default), and crew membership on it before the first push.
import { TtlCache } from '@atcr/core/identity'
import { type CaptainRecord, type CrewRecord, NSID, SELF_RKEY } from '@atcr/core/lexicons'
import { OciError } from '@atcr/core/oci'
import type { AppViewServices } from '../context.ts'
import type { PdsReader } from '../records/pds-reader.ts'
import type { Owner } from '../records/stores.ts'
import {
  type Hold,
  type HoldClient,
  HoldXrpcError,
  holdUnavailable,
  normalizeHoldRef,
} from './hold-client.ts'
import type { HoldHealth } from './hold-health.ts'

const MEMBER_TTL_MS = 10 * 60_000
const DENIAL_BACKOFF_START_MS = 5_000
const DENIAL_BACKOFF_MAX_MS = 10 * 60_000

interface Denial {
  until: number
  backoffMs: number
  message: string
}

export class HoldSelection {
  readonly #ctx: AppViewServices
  readonly #holds: HoldClient
  readonly #reader: PdsReader
  readonly #health: HoldHealth
  readonly #members: TtlCache<true>
  // A refusal is remembered with exponential backoff, so that a user who is not allowed
  // does not make every push ask the hold again.
  readonly #denials = new Map<string, Denial>()

  constructor(ctx: AppViewServices, holds: HoldClient, reader: PdsReader, health: HoldHealth) {
    this.#ctx = ctx
    this.#holds = holds
    this.#reader = reader
    this.#health = health
    this.#members = new TtlCache({
      ttlMs: MEMBER_TTL_MS,
      maxEntries: 10_000,
      counter: ctx.metrics.cacheCounter('hold_member'),
    })
  }

  /** The hold the owner's pushes go to. */
  async pushHold(owner: Owner): Promise<Hold> {
    const profile = await this.#reader.getRecord(
      owner.pds,
      owner.did,
      NSID.sailorProfile,
      SELF_RKEY,
    )
    const chosen = profile?.value.defaultHold
    let did: string | null = null
    if (typeof chosen === 'string' && chosen !== '') did = normalizeHoldRef(chosen)
    did ??= this.#ctx.config.registry.default_hold_did
    if (!did) {
      throw new OciError('DENIED', {
        message:
          'no hold to push to: set defaultHold in your io.atcr.sailor.profile (this AppView has no default hold)',
      })
    }
    const hold = await this.#holds.resolve(did)
    // Pushes are not sent to a hold known to be down (503 naming it).
    await this.#health.watch(hold)
    await this.#health.assertUp(hold)
    return hold
  }

  /**
   * Makes sure `did` may write to the hold: already crew (or captain), or admitted now
   * through requestCrew when the captain allows all crew. Throws DENIED otherwise.
   */
  async ensureCrew(did: string, hold: Hold): Promise<void> {
    const key = `${did} ${hold.did}`
    if (this.#members.get(key)) return
    const denial = this.#denials.get(key)
    if (denial && Date.now() < denial.until) {
      throw new OciError('DENIED', { message: denial.message })
    }
    try {
      await this.#checkCrew(did, hold)
      this.#denials.delete(key)
      this.#members.set(key, true)
    } catch (error) {
      if (error instanceof OciError && error.code === 'DENIED') {
        const backoffMs = Math.min(
          denial ? denial.backoffMs * 2 : DENIAL_BACKOFF_START_MS,
          DENIAL_BACKOFF_MAX_MS,
        )
        this.#denials.set(key, { until: Date.now() + backoffMs, backoffMs, message: error.message })
      }
      throw error
    }
  }

  /** Forget what is known about a member (after the hold refused a write anyway). */
  forget(did: string, hold: Hold): void {
    this.#members.delete(`${did} ${hold.did}`)
  }

  async #checkCrew(did: string, hold: Hold): Promise<void> {
    const captain = (await this.#reader.getRecord(
      hold.endpoint,
      hold.did,
      NSID.holdCaptain,
      SELF_RKEY,
    )) as { value: Partial<CaptainRecord> } | null
    if (captain?.value.owner === did) return
    for await (const record of this.#reader.listRecords(hold.endpoint, hold.did, NSID.holdCrew)) {
      if ((record.value as Partial<CrewRecord>).member === did) return
    }
    if (captain?.value.allowAllCrew !== true) {
      throw new OciError('DENIED', {
        message: `you are not in the crew of hold ${hold.did}, and it does not admit new members: ask its captain to add you`,
      })
    }
    try {
      await this.#holds.procedure(hold, NSID.holdRequestCrew, {}, did)
    } catch (error) {
      if (error instanceof HoldXrpcError) {
        if (error.status >= 400 && error.status < 500) {
          throw new OciError('DENIED', {
            message: `hold ${hold.did} did not admit you to its crew: ${error.error} ${error.message}`,
          })
        }
        throw holdUnavailable(hold, 'requestCrew failed', error)
      }
      throw error
    }
  }
}
