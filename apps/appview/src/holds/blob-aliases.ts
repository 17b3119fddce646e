// The hold API's digest fields hold at most 128 characters, so a hold only takes blobs
// under sha256 digests. A sha512 blob is uploaded under its sha256 digest (which the hold
// verifies) after the AppView checked the sha512 itself; this table leads from the sha512
// digest clients use to the digest the hold stores it under.
import type { AppViewDatabase } from '../db/index.ts'

export class BlobAliases {
  readonly #db: AppViewDatabase

  constructor(db: AppViewDatabase) {
    this.#db = db
  }

  /** The digest to ask the hold for: the alias target, else the digest itself. */
  async storedDigest(holdDid: string, digest: string): Promise<string> {
    if (!digest.startsWith('sha512:')) return digest
    const row = await this.#db.db
      .selectFrom('registry_blob_alias')
      .select('stored_digest')
      .where('hold_did', '=', holdDid)
      .where('digest', '=', digest)
      .executeTakeFirst()
    return row?.stored_digest ?? digest
  }

  async record(holdDid: string, digest: string, storedDigest: string): Promise<void> {
    await this.#db.db
      .insertInto('registry_blob_alias')
      .values({
        hold_did: holdDid,
        digest,
        stored_digest: storedDigest,
        created_at: new Date().toISOString(),
      })
      .onConflict((c) =>
        c.columns(['hold_did', 'digest']).doUpdateSet({ stored_digest: storedDigest }),
      )
      .execute()
  }
}
