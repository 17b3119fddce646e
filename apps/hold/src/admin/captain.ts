// Hold settings kept in the captain record: public, allowAllCrew, enableBlueskyPosts and
// successor. One commit through the repo writer, under the record lock (as crew changes).
import { type CaptainRecord, NSID, SELF_RKEY, validateRecord } from '@atcr/core/lexicons'
import type { LexMap } from '@atproto/lex-data'
import { getCaptain } from '../access/index.ts'
import type { HoldContext } from '../context.ts'
import { withRecordLock } from '../record-lock.ts'

export interface CaptainSettings {
  public: boolean
  allowAllCrew: boolean
  enableBlueskyPosts: boolean
  /** A successor hold's DID; null removes it. */
  successor: string | null
}

/** Writes the settings into the captain record; true when anything changed. */
export async function updateCaptain(ctx: HoldContext, settings: CaptainSettings): Promise<boolean> {
  return withRecordLock(ctx, async () => {
    const { successor: _old, ...current } = await getCaptain(ctx)
    const next: CaptainRecord = validateRecord(NSID.holdCaptain, {
      ...current,
      $type: NSID.holdCaptain,
      public: settings.public,
      allowAllCrew: settings.allowAllCrew,
      enableBlueskyPosts: settings.enableBlueskyPosts,
      ...(settings.successor === null ? {} : { successor: settings.successor }),
    })
    const commit = await ctx.repo.writer.upsertRecord(
      NSID.holdCaptain,
      SELF_RKEY,
      next as unknown as LexMap,
    )
    return commit !== null
  })
}
