// What a repository holds. The AppView's own links (content-links.ts) answer first; content
// it has never seen (pushed through another AppView, or before this database existed) is
// found in the owner's records: a manifest record names the repository it was pushed to, a
// tag record names its repository and manifest, and a manifest's config and layers are the
// blobs its repository holds. A deleted link is never overridden by the records.
import { type CacheCounter, TtlCache } from '@atcr/core/identity'
import {
  contentDigest,
  type ManifestStore,
  type StoredManifest,
  type TagStore,
} from '../records/stores.ts'
import type { ContentLinks } from './content-links.ts'
import type { Target } from './registry.ts'

/** A repository's view of its manifests' records: the blobs they use and their holds. */
interface RecordedContent {
  /** Blob digest → the hold of the newest manifest using it. */
  blobs: Map<string, string | null>
  /** Holds of the repository's manifests, newest first. */
  holds: string[]
  /** Manifests whose records name the repository. */
  manifests: StoredManifest[]
}

const RECORDED_TTL_MS = 60_000

function key(target: Target): string {
  return `${target.owner.did} ${target.repository}`
}

export class RepositoryContent {
  readonly #links: ContentLinks
  readonly #manifests: ManifestStore
  readonly #tags: TagStore
  readonly #recorded: TtlCache<RecordedContent>

  constructor(
    links: ContentLinks,
    manifests: ManifestStore,
    tags: TagStore,
    counter?: CacheCounter,
  ) {
    this.#links = links
    this.#manifests = manifests
    this.#tags = tags
    this.#recorded = new TtlCache({ ttlMs: RECORDED_TTL_MS, maxEntries: 1000, counter })
  }

  /**
   * The manifest record, when the repository holds the manifest of this digest (by its
   * own digest, or by the sha512 a client pushed it by); else null.
   */
  async manifest(target: Target, digest: string): Promise<StoredManifest | null> {
    const link = await this.#links.manifest(target.owner.did, target.repository, digest)
    if (link.state === 'unlinked') return null
    if (link.state === 'unknown' && digest.startsWith('sha512:')) {
      // Recorded under their sha256: found through the records that name the repository.
      const recorded = await this.recorded(target)
      return recorded.manifests.find((m) => contentDigest(m.value) === digest) ?? null
    }
    const record = await this.#manifests.get(target.owner, link.recordDigest)
    if (!record || link.state === 'linked') return record
    if (record.value.repository === target.repository) return record
    for await (const tag of this.#tags.list(target.owner, target.repository)) {
      if (tag.digest === digest) return record
    }
    return null
  }

  /**
   * Whether the repository holds the blob, and the hold it was stored on when known
   * (undefined: not held).
   */
  async blob(target: Target, digest: string): Promise<{ holdDid: string | null } | undefined> {
    const link = await this.#links.blob(target.owner.did, target.repository, digest)
    if (link.state === 'linked') return { holdDid: link.holdDid }
    if (link.state === 'unlinked') return undefined
    const recorded = await this.recorded(target)
    return recorded.blobs.has(digest) ? { holdDid: recorded.blobs.get(digest) ?? null } : undefined
  }

  /** The repository's manifests as its owner's records tell them (cached for a minute). */
  async recorded(target: Target): Promise<RecordedContent> {
    return this.#recorded.getOrLoad(key(target), async () => {
      const deleted = await this.#links.unlinkedManifests(target.owner.did, target.repository)
      const manifests: StoredManifest[] = []
      for await (const manifest of this.#manifests.list(target.owner, target.repository)) {
        if (deleted.has(contentDigest(manifest.value))) continue
        manifests.push(manifest)
      }
      const newestFirst = [...manifests].sort((a, b) =>
        String(b.value.createdAt ?? '').localeCompare(String(a.value.createdAt ?? '')),
      )
      const blobs = new Map<string, string | null>()
      const holds: string[] = []
      for (const manifest of newestFirst) {
        const hold = typeof manifest.value.holdDid === 'string' ? manifest.value.holdDid : null
        if (hold && !holds.includes(hold)) holds.push(hold)
        const used = [manifest.value.config, ...(manifest.value.layers ?? [])]
        for (const blob of used) {
          if (blob && !blobs.has(contentDigest(blob))) blobs.set(contentDigest(blob), hold)
        }
      }
      return { blobs, holds, manifests }
    })
  }

  /** Whether the repository holds any manifest (else `tags/list` answers NAME_UNKNOWN). */
  async holdsSomething(target: Target): Promise<boolean> {
    if (await this.#links.holdsManifests(target.owner.did, target.repository)) return true
    return (await this.recorded(target)).manifests.length > 0
  }

  /** Digests of the manifests in the repository whose subject is `subject`. */
  async referrers(target: Target, subject: string): Promise<string[]> {
    const digests = new Set(
      await this.#links.referrers(target.owner.did, target.repository, subject),
    )
    for (const manifest of (await this.recorded(target)).manifests) {
      const recorded = manifest.value.subject
      if (recorded && contentDigest(recorded) === subject)
        digests.add(contentDigest(manifest.value))
    }
    return [...digests].sort()
  }

  /** The repository's content changed here: forget what its records said. */
  changed(target: Target): void {
    this.#recorded.delete(key(target))
  }
}
