// What the pages read from the index (the index_* tables the indexer fills, see
// docs/appview.md): repositories, their tags and manifests, stars, pull counts, holds. SQL
// for the web UI lives here only; it runs on SQLite and PostgreSQL alike (lower() LIKE for
// case-insensitive matching; aggregates read as numbers).
import { type Kysely, sql } from 'kysely'
import type { AppViewDatabase } from '../db/index.ts'
import type { AppViewSchema, IndexManifestTable } from '../db/schema.ts'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface RepoSummary {
  did: string
  handle: string | null
  repository: string
  /** The first line of the README, or the image's description annotation. */
  summary: string | null
  lastPush: string
  stars: number
  pulls: number
}

export interface ManifestRow {
  did: string
  digest: string
  repository: string
  mediaType: string
  artifactType: string | null
  configDigest: string | null
  subjectDigest: string | null
  size: number
  platforms: Platform[] | null
  description: string | null
  holdDid: string | null
  createdAt: string
  /** The io.atcr.manifest record as stored. */
  record: Record<string, unknown>
}

export interface TagRow {
  tag: string
  digest: string
  createdAt: string
  manifest: ManifestRow | null
}

export interface AccountRow {
  did: string
  handle: string | null
  displayName: string | null
  defaultHold: string | null
  autoRemoveUntagged: boolean
  /** Which client pull commands are written for (io.atcr.sailor.profile ociClient). */
  ociClient: string | null
}

export interface HoldRow {
  holdDid: string
  ownerDid: string
  public: boolean
  allowAllCrew: boolean
  region: string | null
  /**
   * How the user relates to it: their own, they are crew, it takes anyone as crew, or it is
   * their current default hold though the index does not know it (yet).
   */
  relation: 'owner' | 'crew' | 'open' | 'current'
  health: { status: 'unknown' | 'up' | 'down'; endpoint: string; checkedAt: number } | null
}

export interface StarRow {
  subjectDid: string
  subjectHandle: string | null
  repository: string
  createdAt: string
}

type Db = Kysely<AppViewSchema>

/** `%text%` for LIKE, with the user's own % and _ taken literally. */
function likePattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`
}

function json<T>(value: unknown): T | null {
  if (value === null || value === undefined) return null
  if (typeof value !== 'string') return value as T
  try {
    return JSON.parse(value) as T
  } catch {
    return null
  }
}

/** The first line of prose in a README (headings, images and badges skipped), shortened. */
export function summaryOf(markdown: string | null | undefined): string | null {
  if (!markdown) return null
  for (const raw of markdown.split('\n')) {
    const line = raw.trim()
    if (!line || /^(#|!\[|\[!\[|<|```|---|===)/.test(line)) continue
    const plain = line.replace(/[*_`]/g, '').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    return plain.length > 160 ? `${plain.slice(0, 157)}…` : plain
  }
  return null
}

function manifestOf(row: IndexManifestTable): ManifestRow {
  return {
    did: row.did,
    digest: row.digest,
    repository: row.repository,
    mediaType: row.media_type,
    artifactType: row.artifact_type,
    configDigest: row.config_digest,
    subjectDigest: row.subject_digest,
    size: Number(row.size),
    platforms: json<Platform[]>(row.platforms),
    description: row.description,
    holdDid: row.hold_did,
    createdAt: row.created_at,
    record: json<Record<string, unknown>>(row.record) ?? {},
  }
}

export class BrowseStore {
  readonly #db: Db

  constructor(database: AppViewDatabase) {
    this.#db = database.db
  }

  // --- identities -------------------------------------------------------------------------

  async account(did: string): Promise<AccountRow | null> {
    const row = await this.#db
      .selectFrom('index_account')
      .select([
        'did',
        'handle',
        'display_name',
        'default_hold',
        'auto_remove_untagged',
        'oci_client',
      ])
      .where('did', '=', did)
      .executeTakeFirst()
    if (!row) return null
    return {
      did: row.did,
      handle: row.handle,
      displayName: row.display_name,
      defaultHold: row.default_hold,
      autoRemoveUntagged: Number(row.auto_remove_untagged) === 1,
      ociClient: row.oci_client,
    }
  }

  async didOfHandle(handle: string): Promise<string | null> {
    const row = await this.#db
      .selectFrom('index_account')
      .select('did')
      .where('handle', '=', handle.toLowerCase())
      .executeTakeFirst()
    return row?.did ?? null
  }

  async handles(dids: string[]): Promise<Map<string, string>> {
    if (dids.length === 0) return new Map()
    const rows = await this.#db
      .selectFrom('index_account')
      .select(['did', 'handle'])
      .where('did', 'in', [...new Set(dids)])
      .execute()
    return new Map(rows.filter((r) => r.handle).map((r) => [r.did, r.handle!]))
  }

  // --- lists of repositories --------------------------------------------------------------

  /** Repositories by their latest push, newest first (referrers such as signatures aside). */
  async recentRepositories(limit: number): Promise<RepoSummary[]> {
    const rows = await this.#db
      .selectFrom('index_manifest')
      .select(['did', 'repository', (eb) => eb.fn.max('created_at').as('last_push')])
      .where('subject_digest', 'is', null)
      .groupBy(['did', 'repository'])
      .orderBy('last_push', 'desc')
      .limit(limit)
      .execute()
    return this.#summaries(rows.map((r) => ({ ...r, last_push: String(r.last_push) })))
  }

  /** Repositories with the most stars, then pulls. */
  async popularRepositories(limit: number): Promise<RepoSummary[]> {
    const starred = await this.#db
      .selectFrom('index_star')
      .select(['subject_did as did', 'repository', (eb) => eb.fn.countAll().as('n')])
      .groupBy(['subject_did', 'repository'])
      .orderBy('n', 'desc')
      .limit(limit)
      .execute()
    const pulled = await this.#db
      .selectFrom('index_repo_stats')
      .select(['owner_did as did', 'repository', (eb) => eb.fn.sum('pull_count').as('n')])
      .groupBy(['owner_did', 'repository'])
      .orderBy('n', 'desc')
      .limit(limit)
      .execute()
    const keys = [...new Set([...starred, ...pulled].map((r) => `${r.did} ${r.repository}`))]
    const candidates = await this.#latestPushes(keys)
    const summaries = await this.#summaries(candidates)
    return summaries
      .filter((s) => s.stars > 0 || s.pulls > 0)
      .sort((a, b) => b.stars - a.stars || b.pulls - a.pulls)
      .slice(0, limit)
  }

  /**
   * Repositories whose name, owner handle, description or a tag contains `query`
   * (case-insensitive), newest push first; `limit + 1` rows are read to tell whether
   * another page follows.
   */
  async search(
    query: string,
    offset: number,
    limit: number,
  ): Promise<{ results: RepoSummary[]; more: boolean }> {
    const like = likePattern(query)
    const matches = (column: string) =>
      sql<boolean>`lower(${sql.ref(column)}) like ${like} escape '\\'`
    const rows = await this.#db
      .selectFrom('index_manifest as m')
      .leftJoin('index_account as a', 'a.did', 'm.did')
      .leftJoin('index_repo_page as p', (join) =>
        join.onRef('p.did', '=', 'm.did').onRef('p.repository', '=', 'm.repository'),
      )
      .select(['m.did', 'm.repository', (eb) => eb.fn.max('m.created_at').as('last_push')])
      .where('m.subject_digest', 'is', null)
      .where((eb) =>
        eb.or([
          matches('m.repository'),
          matches('a.handle'),
          matches('p.description'),
          matches('m.description'),
          eb.exists(
            eb
              .selectFrom('index_tag as t')
              .select('t.tag')
              .whereRef('t.did', '=', 'm.did')
              .whereRef('t.repository', '=', 'm.repository')
              .where(matches('t.tag')),
          ),
        ]),
      )
      .groupBy(['m.did', 'm.repository'])
      .orderBy('last_push', 'desc')
      .orderBy('m.repository')
      .limit(limit + 1)
      .offset(offset)
      .execute()
    const results = await this.#summaries(
      rows.slice(0, limit).map((r) => ({ ...r, last_push: String(r.last_push) })),
    )
    return { results, more: rows.length > limit }
  }

  /** The repositories of one account, newest push first. */
  async repositoriesOf(did: string): Promise<RepoSummary[]> {
    const rows = await this.#db
      .selectFrom('index_manifest')
      .select(['did', 'repository', (eb) => eb.fn.max('created_at').as('last_push')])
      .where('did', '=', did)
      .where('subject_digest', 'is', null)
      .groupBy(['did', 'repository'])
      .orderBy('last_push', 'desc')
      .limit(500)
      .execute()
    return this.#summaries(rows.map((r) => ({ ...r, last_push: String(r.last_push) })))
  }

  async #latestPushes(keys: string[]) {
    const out: { did: string; repository: string; last_push: string }[] = []
    for (const key of keys) {
      const [did, repository] = key.split(' ') as [string, string]
      const row = await this.#db
        .selectFrom('index_manifest')
        .select((eb) => eb.fn.max('created_at').as('last_push'))
        .where('did', '=', did)
        .where('repository', '=', repository)
        .executeTakeFirst()
      if (row?.last_push) out.push({ did, repository, last_push: String(row.last_push) })
    }
    return out
  }

  /** Handles, summaries, star and pull counts for a list of repositories (a few queries). */
  async #summaries(
    rows: { did: string; repository: string; last_push: string }[],
  ): Promise<RepoSummary[]> {
    if (rows.length === 0) return []
    const dids = [...new Set(rows.map((r) => r.did))]
    const key = (did: string, repository: string) => `${did} ${repository}`
    const handles = await this.handles(dids)
    const pages = await this.#db
      .selectFrom('index_repo_page')
      .select(['did', 'repository', 'description'])
      .where('did', 'in', dids)
      .execute()
    const readme = new Map(pages.map((p) => [key(p.did, p.repository), p.description]))
    const described = await this.#db
      .selectFrom('index_manifest')
      .select(['did', 'repository', 'description', 'created_at'])
      .where('did', 'in', dids)
      .where('description', 'is not', null)
      .orderBy('created_at', 'asc')
      .execute()
    const annotation = new Map(described.map((m) => [key(m.did, m.repository), m.description]))
    const stars = await this.#db
      .selectFrom('index_star')
      .select(['subject_did', 'repository', (eb) => eb.fn.countAll().as('n')])
      .where('subject_did', 'in', dids)
      .groupBy(['subject_did', 'repository'])
      .execute()
    const starCount = new Map(stars.map((s) => [key(s.subject_did, s.repository), Number(s.n)]))
    const pulls = await this.#db
      .selectFrom('index_repo_stats')
      .select(['owner_did', 'repository', (eb) => eb.fn.sum('pull_count').as('n')])
      .where('owner_did', 'in', dids)
      .groupBy(['owner_did', 'repository'])
      .execute()
    const pullCount = new Map(pulls.map((p) => [key(p.owner_did, p.repository), Number(p.n)]))
    return rows.map((r) => {
      const k = key(r.did, r.repository)
      return {
        did: r.did,
        handle: handles.get(r.did) ?? null,
        repository: r.repository,
        summary: summaryOf(readme.get(k)) ?? summaryOf(annotation.get(k)),
        lastPush: r.last_push,
        stars: starCount.get(k) ?? 0,
        pulls: pullCount.get(k) ?? 0,
      }
    })
  }

  // --- one repository ---------------------------------------------------------------------

  /** The repository's tags, newest first, each with its manifest. */
  async tags(did: string, repository: string): Promise<TagRow[]> {
    const rows = await this.#db
      .selectFrom('index_tag as t')
      .leftJoin('index_manifest as m', (join) =>
        join.onRef('m.did', '=', 't.did').onRef('m.digest', '=', 't.digest'),
      )
      .select(['t.tag', 't.digest as tag_digest', 't.created_at as tagged_at'])
      .selectAll('m')
      .where('t.did', '=', did)
      .where('t.repository', '=', repository)
      .orderBy('t.created_at', 'desc')
      .orderBy('t.tag')
      .limit(500)
      .execute()
    return rows.map((row) => ({
      tag: row.tag,
      digest: row.tag_digest,
      createdAt: row.tagged_at,
      manifest: row.digest === null ? null : manifestOf(row as unknown as IndexManifestTable),
    }))
  }

  /** The manifests whose records name the repository, newest first. */
  async manifests(did: string, repository: string): Promise<ManifestRow[]> {
    const rows = await this.#db
      .selectFrom('index_manifest')
      .selectAll()
      .where('did', '=', did)
      .where('repository', '=', repository)
      .orderBy('created_at', 'desc')
      .limit(500)
      .execute()
    return rows.map(manifestOf)
  }

  async manifest(did: string, digest: string): Promise<ManifestRow | null> {
    const row = await this.#db
      .selectFrom('index_manifest')
      .selectAll()
      .where('did', '=', did)
      .where('digest', '=', digest)
      .executeTakeFirst()
    return row ? manifestOf(row) : null
  }

  async manifestsByDigest(did: string, digests: string[]): Promise<ManifestRow[]> {
    if (digests.length === 0) return []
    const rows = await this.#db
      .selectFrom('index_manifest')
      .selectAll()
      .where('did', '=', did)
      .where('digest', 'in', digests)
      .execute()
    return rows.map(manifestOf)
  }

  /** Manifests of the owner that refer to one of `subjects` (signatures, SBOMs...). */
  async referrers(did: string, subjects: string[]): Promise<ManifestRow[]> {
    if (subjects.length === 0) return []
    const rows = await this.#db
      .selectFrom('index_manifest')
      .selectAll()
      .where('did', '=', did)
      .where('subject_digest', 'in', subjects)
      .orderBy('created_at', 'desc')
      .limit(200)
      .execute()
    return rows.map(manifestOf)
  }

  async repoPage(did: string, repository: string): Promise<{ description: string | null } | null> {
    const row = await this.#db
      .selectFrom('index_repo_page')
      .select('description')
      .where('did', '=', did)
      .where('repository', '=', repository)
      .executeTakeFirst()
    return row ?? null
  }

  async starCount(did: string, repository: string): Promise<number> {
    const row = await this.#db
      .selectFrom('index_star')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('subject_did', '=', did)
      .where('repository', '=', repository)
      .executeTakeFirst()
    return Number(row?.n ?? 0)
  }

  /** The record keys of `starrer`'s stars of the repository (none: not starred). */
  async starKeys(starrer: string, did: string, repository: string): Promise<string[]> {
    const rows = await this.#db
      .selectFrom('index_star')
      .select('rkey')
      .where('did', '=', starrer)
      .where('subject_did', '=', did)
      .where('repository', '=', repository)
      .execute()
    return rows.map((r) => r.rkey)
  }

  async pullCount(did: string, repository: string): Promise<number> {
    const row = await this.#db
      .selectFrom('index_repo_stats')
      .select((eb) => eb.fn.sum('pull_count').as('n'))
      .where('owner_did', '=', did)
      .where('repository', '=', repository)
      .executeTakeFirst()
    return Number(row?.n ?? 0)
  }

  // --- accounts and holds -----------------------------------------------------------------

  async starsBy(did: string): Promise<StarRow[]> {
    const rows = await this.#db
      .selectFrom('index_star as s')
      .leftJoin('index_account as a', 'a.did', 's.subject_did')
      .select(['s.subject_did', 'a.handle', 's.repository', 's.created_at'])
      .where('s.did', '=', did)
      .orderBy('s.created_at', 'desc')
      .limit(500)
      .execute()
    return rows.map((r) => ({
      subjectDid: r.subject_did,
      subjectHandle: r.handle,
      repository: r.repository,
      createdAt: r.created_at,
    }))
  }

  /**
   * Holds `did` may push to: its own, those it is crew on, and those that take anyone as
   * crew; with their last health check.
   */
  async holdsFor(did: string, options: { includeOpen: boolean }): Promise<HoldRow[]> {
    const crewOn = this.#db
      .selectFrom('index_hold_crew')
      .select('hold_did')
      .where('member_did', '=', did)
    const rows = await this.#db
      .selectFrom('index_hold_captain as c')
      .leftJoin('hold_health as h', 'h.hold_did', 'c.hold_did')
      .select([
        'c.hold_did',
        'c.owner_did',
        'c.public',
        'c.allow_all_crew',
        'c.region',
        'h.status',
        'h.endpoint',
        'h.checked_at',
        (eb) => eb('c.hold_did', 'in', crewOn).as('is_crew'),
      ])
      .where((eb) =>
        eb.or([
          eb('c.owner_did', '=', did),
          eb('c.hold_did', 'in', crewOn),
          ...(options.includeOpen ? [eb('c.allow_all_crew', '=', 1)] : []),
        ]),
      )
      .orderBy('c.hold_did')
      .limit(200)
      .execute()
    return rows.map((r) => ({
      holdDid: r.hold_did,
      ownerDid: r.owner_did,
      public: Number(r.public) === 1,
      allowAllCrew: Number(r.allow_all_crew) === 1,
      region: r.region,
      relation: r.owner_did === did ? 'owner' : r.is_crew ? 'crew' : 'open',
      health:
        r.status && r.endpoint
          ? { status: r.status, endpoint: r.endpoint, checkedAt: Number(r.checked_at) }
          : null,
    }))
  }

  async holdHealth(holdDid: string): Promise<HoldRow['health']> {
    const row = await this.#db
      .selectFrom('hold_health')
      .select(['status', 'endpoint', 'checked_at'])
      .where('hold_did', '=', holdDid)
      .executeTakeFirst()
    return row ? { status: row.status, endpoint: row.endpoint, checkedAt: row.checked_at } : null
  }
}
