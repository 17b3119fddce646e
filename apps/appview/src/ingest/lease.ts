// Which AppView instance consumes: a named lease in the shared database. The holder renews
// it; when it stops renewing (it died, or lost the database), the lease expires and another
// instance takes it. Times are each instance's clock, so instances must keep their clocks
// roughly in step (well within the lease's lifetime).
import type { AppViewDatabase } from '../db/index.ts'

export class IngestLease {
  readonly name: string
  readonly holder: string
  readonly #db: AppViewDatabase
  readonly #ttlMs: number
  readonly #now: () => number

  constructor(options: {
    db: AppViewDatabase
    name: string
    holder: string
    ttlMs: number
    now: () => number
  }) {
    this.#db = options.db
    this.name = options.name
    this.holder = options.holder
    this.#ttlMs = options.ttlMs
    this.#now = options.now
  }

  /**
   * Takes the lease when it is free or expired, or renews it when this holder has it; one
   * statement, so two instances cannot both win. Whether this holder has it now.
   */
  async acquire(): Promise<boolean> {
    const now = this.#now()
    const row = { holder: this.holder, expires_at: now + this.#ttlMs }
    await this.#db.db
      .insertInto('ingest_lease')
      .values({ name: this.name, ...row })
      .onConflict((c) =>
        c
          .column('name')
          .doUpdateSet(row)
          .where((eb) =>
            eb.or([
              eb('ingest_lease.holder', '=', this.holder),
              eb('ingest_lease.expires_at', '<', now),
            ]),
          ),
      )
      .execute()
    return (await this.current())?.holder === this.holder
  }

  /** The lease's holder and expiry, if anyone ever took it. */
  async current(): Promise<{ holder: string; expires_at: number } | null> {
    const row = await this.#db.db
      .selectFrom('ingest_lease')
      .select(['holder', 'expires_at'])
      .where('name', '=', this.name)
      .executeTakeFirst()
    return row ? { holder: row.holder, expires_at: Number(row.expires_at) } : null
  }

  /** Gives the lease up at once (a clean stop), so another instance need not wait. */
  async release(): Promise<void> {
    await this.#db.db
      .deleteFrom('ingest_lease')
      .where('name', '=', this.name)
      .where('holder', '=', this.holder)
      .execute()
  }
}
