// What the /v2 handlers share: the record stores, the hold client and hold selection, the
// upload sessions; and the two steps every request takes: authorize, then resolve the name.
import { IdentityError, SsrfBlockedError } from '@atcr/core/identity'
import { OciError, repositoryScope, scopeAllows, type TokenScope } from '@atcr/core/oci'
import type { FastifyRequest } from 'fastify'
import { type Caller, NoSessionError } from '../auth/types.ts'
import type { AppViewServices } from '../context.ts'
import { type Hold, HoldClient } from '../holds/hold-client.ts'
import { HoldHealth } from '../holds/hold-health.ts'
import { HoldSelection } from '../holds/hold-selection.ts'
import { clientSafeDid, type ImageName, parseImageName } from '../names.ts'
import { PdsReader } from '../records/pds-reader.ts'
import { ManifestStore, type Owner, type RecordIndex, TagStore } from '../records/stores.ts'
import { RepositoryContent } from './content.ts'
import { ContentLinks } from './content-links.ts'
import { UploadSessions } from './upload-sessions.ts'

/** A repository named in a request, its owner resolved. */
export interface Target {
  /** The name exactly as the client wrote it (what its token's scope names). */
  name: string
  repository: string
  owner: Owner
  /** The owner's handle, when their DID document claims one that resolves back. */
  handle?: string
}

export type Action = 'pull' | 'push' | 'delete'

export class Registry {
  readonly ctx: AppViewServices
  readonly reader: PdsReader
  readonly manifests: ManifestStore
  readonly tags: TagStore
  readonly holds: HoldClient
  readonly selection: HoldSelection
  readonly health: HoldHealth
  readonly uploads: UploadSessions
  readonly links: ContentLinks
  readonly content: RepositoryContent

  constructor(ctx: AppViewServices) {
    this.ctx = ctx
    this.reader = new PdsReader(ctx.fetch, {
      maxBlobBytes: ctx.config.registry.max_manifest_size,
      cacheCounter: (cache) => ctx.metrics.cacheCounter(cache),
    })
    const index: RecordIndex = {
      apply: (change) => ctx.index.apply(change),
      authoritative: (did) => ctx.ingest.authoritative(did),
      tag: (did, repository, tag) => ctx.index.tag(did, repository, tag),
      tags: (did, repository, options) => ctx.index.tags(did, repository, options),
      ownerTags: (did) => ctx.index.ownerTags(did),
      manifestRecord: (did, digest) => ctx.index.manifestRecord(did, digest),
      manifestRecords: (did, repository) => ctx.index.manifestRecords(did, repository),
    }
    this.manifests = new ManifestStore(this.reader, index)
    this.tags = new TagStore(this.reader, index)
    this.holds = new HoldClient(ctx)
    this.health = new HoldHealth({
      db: ctx.db,
      fetch: ctx.fetch,
      intervalMs: ctx.config.registry.hold_health_interval * 1000,
      logger: ctx.logger.child({ subsystem: 'hold-health' }),
    })
    this.selection = new HoldSelection(ctx, this.holds, this.reader, this.health)
    this.links = new ContentLinks(ctx.db)
    this.content = new RepositoryContent(
      this.links,
      this.manifests,
      this.tags,
      ctx.metrics.cacheCounter('repository_content'),
    )
    this.uploads = new UploadSessions({
      holds: this.holds,
      db: ctx.db,
      dataDir: ctx.config.server.data_dir,
      partSize: ctx.config.registry.upload_part_size,
      maxPerAccount: ctx.config.registry.max_uploads_per_account,
      idleTimeoutMs: ctx.config.registry.upload_idle_timeout * 1000,
      logger: ctx.logger.child({ subsystem: 'uploads' }),
    })
  }

  async close(): Promise<void> {
    this.uploads.close()
    await this.health.close()
  }

  /**
   * The caller, if their registry token grants `action` on `name`; otherwise the 401
   * challenge naming the scope to ask for. Delete is also allowed by a push grant: both
   * are writes to one's own repository.
   */
  async authorize(request: FastifyRequest, name: string, action: Action): Promise<Caller> {
    const caller = await this.ctx.auth.authenticate(request)
    const resource = { type: 'repository', name }
    const allowed =
      scopeAllows(caller.access, resource, action) ||
      (action === 'delete' && scopeAllows(caller.access, resource, 'push'))
    if (!allowed) {
      const actions = action === 'push' ? ['pull', 'push'] : [action]
      throw this.challenge(caller, [repositoryScope(name, actions)])
    }
    return caller
  }

  challenge(caller: Caller, scope?: TokenScope[]): OciError {
    return this.ctx.auth.challenge(scope, caller.did ? 'insufficient_scope' : undefined)
  }

  /** Refuses writes into a namespace that is not the caller's own. */
  assertOwner(caller: Caller, target: Target): string {
    if (caller.did === null || caller.did !== target.owner.did) {
      throw new OciError('DENIED', {
        message: `only ${target.owner.did} may write to ${target.name}`,
      })
    }
    return caller.did
  }

  parseName(name: string): ImageName {
    return parseImageName(name)
  }

  /** The owner's DID and PDS; NAME_UNKNOWN when the handle or DID does not exist. */
  async resolve(image: ImageName): Promise<Target> {
    const subject = image.identity.kind === 'did' ? image.identity.did : image.identity.handle
    try {
      const identity = await this.ctx.identity.resolveIdentity(subject)
      return {
        name: image.name,
        repository: image.repository,
        owner: { did: identity.did, pds: identity.pdsEndpoint },
        ...(identity.handle ? { handle: identity.handle } : {}),
      }
    } catch (error) {
      if (error instanceof SsrfBlockedError) {
        throw new OciError('NAME_UNKNOWN', {
          message: `${subject} cannot be resolved from this registry: ${error.message}`,
          detail: { name: image.name },
        })
      }
      if (error instanceof IdentityError) {
        if (error.code === 'IdentityUnavailable') {
          throw new OciError('UNAVAILABLE', {
            message: `${subject} could not be resolved right now: ${error.message}`,
            cause: error,
          })
        }
        throw new OciError('NAME_UNKNOWN', {
          message: `${subject} is not a known identity: ${error.message}`,
          detail: { name: image.name },
        })
      }
      throw error
    }
  }

  /** An agent on the caller's PDS; a missing session asks the client to log in again. */
  async agentFor(caller: Caller, scope: TokenScope[]) {
    try {
      return await this.ctx.sessions.agentFor(caller.did!)
    } catch (error) {
      if (error instanceof NoSessionError) throw this.ctx.auth.challenge(scope, 'invalid_token')
      throw error
    }
  }

  /**
   * The holds to ask for a blob the repository holds, in order: the one it was stored on,
   * then the holds of the repository's manifests (newest first), then the owner's push
   * hold. Lazy: the records are read only when the first holds do not have it.
   */
  async *blobHolds(target: Target, storedOn: string | null): AsyncIterable<string> {
    const asked = new Set<string>()
    if (storedOn) {
      asked.add(storedOn)
      yield storedOn
    }
    for (const did of (await this.content.recorded(target)).holds) {
      if (!asked.has(did)) yield did
      asked.add(did)
    }
    // No push hold (none configured, or it does not resolve): the others are all there is.
    const push = await this.selection.pushHold(target.owner).catch(() => null)
    if (push && !asked.has(push.did)) yield push.did
  }

  /** A blob just stored on `holdDid` (an upload finished) now belongs to the repository. */
  async linkBlob(target: Target, digest: string, holdDid: string): Promise<void> {
    await this.links.linkBlobs(target.owner.did, target.repository, [digest], holdDid)
  }

  /**
   * A cross-repository mount (`?mount=<digest>&from=<name>`): links the blob into the
   * target repository when `from` is a repository of the same owner that holds it and the
   * push hold stores it. False when it cannot be mounted (the client then uploads it).
   */
  async mountBlob(
    target: Target,
    from: string | undefined,
    digest: string,
    hold: Hold,
    callerDid: string,
  ): Promise<boolean> {
    if (from === undefined) return false
    let source: ImageName
    try {
      source = this.parseName(from)
    } catch {
      return false
    }
    const sourceTarget = await this.resolve(source).catch(() => null)
    if (!sourceTarget || sourceTarget.owner.did !== target.owner.did) return false
    if (!(await this.content.blob(sourceTarget, digest))) return false
    if (!(await this.holds.hasBlob(hold, digest, callerDid))) return false
    await this.linkBlob(target, digest, hold.did)
    return true
  }

  /**
   * Records a repository in the local catalog, named by the owner's handle (so that
   * searching by handle finds it); by the DID when the handle is unknown or its name is
   * taken by an earlier owner of the handle.
   */
  async remember(target: Target): Promise<void> {
    const didName = `${clientSafeDid(target.owner.did)}/${target.repository}`
    const handleName = target.handle ? `${target.handle}/${target.repository}` : didName
    const names = [...new Set([handleName, didName])]
    await this.links.rememberRepository(target.owner.did, target.repository, names)
    await this.ctx.index.setAccount(target.owner.did, {
      handle: target.handle ?? null,
      pds: target.owner.pds,
    })
  }
}
