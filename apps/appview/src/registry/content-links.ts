// Which manifests and blobs each repository holds, in the AppView's database: the
// repository links of CNCF Distribution. A link is made by a push, an upload or a mount and
// removed by a delete; a removed link is kept as `linked = 0`, so that the owner's records,
// which may still name the repository, do not bring deleted content back. No row means
// this AppView has not seen the content: the caller falls back to the owner's records.
import { isUniqueViolation } from '@atcr/core/database'
import type { AppViewDatabase } from '../db/index.ts'

/** What the database says of one link: held, deleted, or never seen here. */
export type LinkState = 'linked' | 'unlinked' | 'unknown'

export interface BlobLink {
  state: LinkState
  /** The hold the blob was stored on when linked, when known. */
  holdDid: string | null
}

function state(row: { linked: number } | undefined): LinkState {
  if (!row) return 'unknown'
  return row.linked === 1 ? 'linked' : 'unlinked'
}

export class ContentLinks {
  readonly #db: AppViewDatabase

  constructor(db: AppViewDatabase) {
    this.#db = db
  }

  /** The link of a manifest, and the digest its record is keyed by when not its own. */
  async manifest(
    did: string,
    repository: string,
    digest: string,
  ): Promise<{ state: LinkState; recordDigest: string }> {
    const row = await this.#db.db
      .selectFrom('repository_manifest')
      .select(['linked', 'record_digest'])
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('digest', '=', digest)
      .executeTakeFirst()
    return { state: state(row), recordDigest: row?.record_digest ?? digest }
  }

  async linkManifest(
    did: string,
    repository: string,
    manifest: { digest: string; recordDigest: string; subject: string | null },
  ): Promise<void> {
    const now = new Date().toISOString()
    const { digest, subject } = manifest
    const record_digest = manifest.recordDigest === digest ? null : manifest.recordDigest
    await this.#db.db
      .insertInto('repository_manifest')
      .values({ did, repository, digest, linked: 1, record_digest, subject, updated_at: now })
      .onConflict((c) =>
        c
          .columns(['did', 'repository', 'digest'])
          .doUpdateSet({ linked: 1, record_digest, subject, updated_at: now }),
      )
      .execute()
  }

  async unlinkManifest(did: string, repository: string, digest: string): Promise<void> {
    const now = new Date().toISOString()
    await this.#db.db
      .insertInto('repository_manifest')
      .values({
        did,
        repository,
        digest,
        linked: 0,
        record_digest: null,
        subject: null,
        updated_at: now,
      })
      .onConflict((c) =>
        c.columns(['did', 'repository', 'digest']).doUpdateSet({ linked: 0, updated_at: now }),
      )
      .execute()
  }

  /** The repositories of `did` in which a manifest is linked. */
  async repositoriesHolding(did: string, digest: string): Promise<string[]> {
    const rows = await this.#db.db
      .selectFrom('repository_manifest')
      .select('repository')
      .where('did', '=', did)
      .where('digest', '=', digest)
      .where('linked', '=', 1)
      .execute()
    return rows.map((r) => r.repository)
  }

  /** Manifests linked in the repository whose subject is `subject`. */
  async referrers(did: string, repository: string, subject: string): Promise<string[]> {
    const rows = await this.#db.db
      .selectFrom('repository_manifest')
      .select('digest')
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('subject', '=', subject)
      .where('linked', '=', 1)
      .execute()
    return rows.map((r) => r.digest)
  }

  /** Manifests deleted from the repository (their records may still name it). */
  async unlinkedManifests(did: string, repository: string): Promise<Set<string>> {
    const rows = await this.#db.db
      .selectFrom('repository_manifest')
      .select('digest')
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('linked', '=', 0)
      .execute()
    return new Set(rows.map((r) => r.digest))
  }

  /** Whether any manifest is linked in the repository. */
  async holdsManifests(did: string, repository: string): Promise<boolean> {
    const row = await this.#db.db
      .selectFrom('repository_manifest')
      .select('digest')
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('linked', '=', 1)
      .limit(1)
      .executeTakeFirst()
    return row !== undefined
  }

  async blob(did: string, repository: string, digest: string): Promise<BlobLink> {
    const row = await this.#db.db
      .selectFrom('repository_blob')
      .select(['linked', 'hold_did'])
      .where('did', '=', did)
      .where('repository', '=', repository)
      .where('digest', '=', digest)
      .executeTakeFirst()
    return { state: state(row), holdDid: row?.hold_did ?? null }
  }

  async linkBlobs(
    did: string,
    repository: string,
    digests: readonly string[],
    holdDid: string | null,
  ): Promise<void> {
    if (digests.length === 0) return
    const now = new Date().toISOString()
    const values = digests.map((digest) => ({
      did,
      repository,
      digest,
      linked: 1,
      hold_did: holdDid,
      updated_at: now,
    }))
    await this.#db.db
      .insertInto('repository_blob')
      .values(values)
      .onConflict((c) =>
        c.columns(['did', 'repository', 'digest']).doUpdateSet((eb) => ({
          linked: 1,
          hold_did: eb.fn.coalesce(eb.ref('excluded.hold_did'), eb.ref('repository_blob.hold_did')),
          updated_at: now,
        })),
      )
      .execute()
  }

  async unlinkBlob(did: string, repository: string, digest: string): Promise<void> {
    const now = new Date().toISOString()
    await this.#db.db
      .insertInto('repository_blob')
      .values({ did, repository, digest, linked: 0, hold_did: null, updated_at: now })
      .onConflict((c) =>
        c.columns(['did', 'repository', 'digest']).doUpdateSet({ linked: 0, updated_at: now }),
      )
      .execute()
  }

  /**
   * Records a repository in the local catalog under the first of `names` no other
   * repository has taken (the last is the owner's DID spelling, which only they have).
   */
  async rememberRepository(
    did: string,
    repository: string,
    names: readonly string[],
  ): Promise<void> {
    const now = new Date().toISOString()
    for (const [i, name] of names.entries()) {
      try {
        await this.#db.db
          .insertInto('registry_repository')
          .values({ did, repository, name, created_at: now, updated_at: now })
          .onConflict((c) =>
            c.columns(['did', 'repository']).doUpdateSet({ name, updated_at: now }),
          )
          .execute()
        return
      } catch (error) {
        if (i === names.length - 1 || !isUniqueViolation(error)) throw error
      }
    }
  }

  /**
   * Names for `/v2/_catalog`, in order, after `last`: the repositories that hold a manifest
   * (one whose content was all deleted is not listed).
   */
  async catalog(last: string | undefined, limit: number | undefined): Promise<string[]> {
    let query = this.#db.db
      .selectFrom('registry_repository as r')
      .select('r.name')
      .where(({ exists, selectFrom }) =>
        exists(
          selectFrom('repository_manifest as m')
            .select('m.digest')
            .whereRef('m.did', '=', 'r.did')
            .whereRef('m.repository', '=', 'r.repository')
            .where('m.linked', '=', 1),
        ),
      )
      .orderBy('r.name')
    if (last !== undefined) query = query.where('r.name', '>', last)
    if (limit !== undefined) query = query.limit(limit)
    return (await query.execute()).map((row) => row.name)
  }
}
