// The hold_health table: the last health check of each hold, shared by the instances.
import type { AppViewDatabase } from '../db/index.ts'
import type { HoldHealthTable } from '../db/schema.ts'

export type HoldHealthRow = HoldHealthTable

export class HoldHealthStore {
  readonly #db: AppViewDatabase

  constructor(db: AppViewDatabase) {
    this.#db = db
  }

  /** Starts watching a hold (status unknown); a hold already watched keeps its record. */
  async watch(holdDid: string, endpoint: string, now: number): Promise<void> {
    await this.#db.db
      .insertInto('hold_health')
      .values({
        hold_did: holdDid,
        endpoint,
        status: 'unknown',
        latency_ms: null,
        error: null,
        checked_at: 0,
        changed_at: now,
      })
      .onConflict((c) => c.column('hold_did').doUpdateSet({ endpoint }))
      .execute()
  }

  /** Records a check; `changed_at` moves only when the status changes. */
  async record(
    row: Pick<HoldHealthRow, 'hold_did' | 'endpoint' | 'status' | 'latency_ms' | 'error'>,
    now: number,
  ): Promise<void> {
    await this.#db.db
      .insertInto('hold_health')
      .values({ ...row, checked_at: now, changed_at: now })
      .onConflict((c) =>
        c.column('hold_did').doUpdateSet((eb) => ({
          endpoint: row.endpoint,
          status: row.status,
          latency_ms: row.latency_ms,
          error: row.error,
          checked_at: now,
          changed_at: eb
            .case()
            .when('hold_health.status', '=', row.status)
            .then(eb.ref('hold_health.changed_at'))
            .else(now)
            .end(),
        })),
      )
      .execute()
  }

  async get(holdDid: string): Promise<HoldHealthRow | null> {
    const row = await this.#db.db
      .selectFrom('hold_health')
      .selectAll()
      .where('hold_did', '=', holdDid)
      .executeTakeFirst()
    return row ?? null
  }

  async list(): Promise<HoldHealthRow[]> {
    return this.#db.db.selectFrom('hold_health').selectAll().orderBy('hold_did').execute()
  }
}
