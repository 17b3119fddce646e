// Crew requests waiting for the captain (the crew_request table): requestCrew on a hold
// that does not admit everyone leaves one here, and the admin pages approve (a crew record
// is written, see index.ts) or deny it. Bounded: past MAX_PENDING new requests are not kept.
import type { HoldDatabase } from '../db/index.ts'

/** Requests kept at most; more are refused without being kept. */
export const MAX_PENDING = 1000

export interface CrewRequest {
  did: string
  role: string
  permissions: string[]
  requestedAt: number
}

/** Keeps (or renews) `request`; false when the queue is full and it was not kept. */
export async function recordCrewRequest(
  database: HoldDatabase,
  request: CrewRequest,
): Promise<boolean> {
  const { db } = database
  return db.transaction().execute(async (tx) => {
    const existing = await tx
      .selectFrom('crew_request')
      .select('did')
      .where('did', '=', request.did)
      .executeTakeFirst()
    if (!existing) {
      const { n } = await tx
        .selectFrom('crew_request')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
      if (Number(n) >= MAX_PENDING) return false
    }
    const row = {
      role: request.role,
      permissions: JSON.stringify(request.permissions),
      requested_at: request.requestedAt,
    }
    await tx
      .insertInto('crew_request')
      .values({ did: request.did, ...row })
      .onConflict((c) => c.column('did').doUpdateSet(row))
      .execute()
    return true
  })
}

/** Pending requests, oldest first. */
export async function listCrewRequests(database: HoldDatabase): Promise<CrewRequest[]> {
  const rows = await database.db
    .selectFrom('crew_request')
    .selectAll()
    .orderBy('requested_at')
    .limit(MAX_PENDING)
    .execute()
  return rows.map(toRequest)
}

export async function getCrewRequest(
  database: HoldDatabase,
  did: string,
): Promise<CrewRequest | null> {
  const row = await database.db
    .selectFrom('crew_request')
    .selectAll()
    .where('did', '=', did)
    .executeTakeFirst()
  return row ? toRequest(row) : null
}

/** Drops the request of `did`; whether there was one. */
export async function deleteCrewRequest(database: HoldDatabase, did: string): Promise<boolean> {
  const result = await database.db
    .deleteFrom('crew_request')
    .where('did', '=', did)
    .executeTakeFirst()
  return Number(result.numDeletedRows) > 0
}

function toRequest(row: {
  did: string
  role: string
  permissions: string
  requested_at: number
}): CrewRequest {
  const parsed: unknown = JSON.parse(row.permissions)
  return {
    did: row.did,
    role: row.role,
    permissions: Array.isArray(parsed) ? parsed.filter((p) => typeof p === 'string') : [],
    requestedAt: Number(row.requested_at),
  }
}
