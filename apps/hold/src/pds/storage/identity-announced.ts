import type { Kysely } from 'kysely'
import type { HoldSchema } from '../../db/schema.ts'

/** The DID document last announced for `did`, as stored (null before the first). */
export async function getAnnouncedIdentity(
  db: Kysely<HoldSchema>,
  did: string,
): Promise<string | null> {
  const row = await db
    .selectFrom('identity_announced')
    .select('document')
    .where('did', '=', did)
    .executeTakeFirst()
  return row?.document ?? null
}

export async function putAnnouncedIdentity(
  db: Kysely<HoldSchema>,
  did: string,
  document: string,
): Promise<void> {
  const announced_at = new Date().toISOString()
  await db
    .insertInto('identity_announced')
    .values({ did, document, announced_at })
    .onConflict((oc) => oc.column('did').doUpdateSet({ document, announced_at }))
    .execute()
}
