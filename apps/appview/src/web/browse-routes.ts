// The pages anyone can read, from the index: home (recent and popular repositories),
// search, a repository (/r/<identity>/<repo>), one tag or manifest of it
// (/r/<identity>/<repo>/-/<tag-or-digest>) and an account (/u/<identity>).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { clientSafeDid, parseIdentity } from '../names.ts'
import type { ManifestRow, Platform, RepoSummary, TagRow } from './browse-store.ts'
import { pullCommand } from './format.ts'
import type { ImageConfig } from './image-config.ts'
import { renderMarkdown } from './markdown.ts'
import { sendPage } from './views.ts'
import { field, type WebKit } from './web-kit.ts'

const SEARCH_PAGE_SIZE = 20
const MAX_SEARCH_LENGTH = 100
const MAX_SEARCH_PAGE = 50

export interface Owner {
  did: string
  handle: string | null
}

/** A handle or DID from a page path, as its owner; null when it names nobody. */
export async function resolveOwner(web: WebKit, identity: string): Promise<Owner | null> {
  const ref = parseIdentity(identity)
  if (!ref) return null
  const { browse } = web.ctx.web
  if (ref.kind === 'did') {
    const account = await browse.account(ref.did)
    return { did: ref.did, handle: account?.handle ?? null }
  }
  const known = await browse.didOfHandle(ref.handle)
  if (known) return { did: known, handle: ref.handle }
  const resolved = await web.ctx.identity.resolveIdentity(ref.handle).catch(() => null)
  return resolved ? { did: resolved.did, handle: resolved.handle ?? ref.handle } : null
}

/** How image names spell the owner: the handle, else the DID as OCI clients accept it. */
export function ownerName(owner: Owner): string {
  return owner.handle ?? clientSafeDid(owner.did)
}

/** The page path of a repository (or of one of its tags or manifests). */
export function repoPath(owner: Owner, repository: string, ref?: string): string {
  const base = `/r/${encodeURIComponent(ownerName(owner))}/${repository}`
  return ref === undefined ? base : `${base}/-/${encodeURIComponent(ref)}`
}

/** `/r/<identity>/<repo>[/-/<ref>]`: the path after /r/ taken apart. */
export function parseRepoPath(
  rest: string,
): { identity: string; repository: string; ref?: string } | null {
  const slash = rest.indexOf('/')
  if (slash <= 0) return null
  const identity = decodeURIComponent(rest.slice(0, slash))
  const tail = rest.slice(slash + 1)
  const marker = tail.indexOf('/-/')
  const repository = marker === -1 ? tail.replace(/\/$/, '') : tail.slice(0, marker)
  if (!/^[a-z0-9]+([._/-][a-z0-9]+)*$/.test(repository.replace(/__|-+/g, '-'))) return null
  if (marker === -1) return { identity, repository }
  const ref = decodeURIComponent(tail.slice(marker + 3))
  return ref ? { identity, repository, ref } : null
}

/** The image to show for a tag: itself, or an index's linux/amd64 (else first) child. */
async function imageOf(
  web: WebKit,
  manifest: ManifestRow,
): Promise<{ image: ManifestRow | null; platform: Platform | null }> {
  const children = childrenOf(manifest)
  if (children.length === 0) return { image: manifest, platform: null }
  const preferred =
    children.find((c) => c.platform?.os === 'linux' && c.platform.architecture === 'amd64') ??
    children[0]!
  return {
    image: await web.ctx.web.browse.manifest(manifest.did, preferred.digest),
    platform: preferred.platform ?? null,
  }
}

interface Child {
  digest: string
  size: number
  mediaType: string
  platform?: Platform
}

function childrenOf(manifest: ManifestRow): Child[] {
  const list = manifest.record.manifests
  return Array.isArray(list) ? (list as Child[]) : []
}

interface LayerView {
  digest: string
  size: number
  mediaType: string
  command: string | null
}

/** Layers with the command that made each (history entries that made a layer, in order). */
function layersOf(image: ManifestRow, config: ImageConfig | null): LayerView[] {
  const layers = Array.isArray(image.record.layers)
    ? (image.record.layers as { digest: string; size: number; mediaType: string }[])
    : []
  const made = (config?.history ?? []).filter((h) => !h.empty_layer)
  return layers.map((layer, i) => ({
    digest: layer.digest,
    size: layer.size,
    mediaType: layer.mediaType,
    command: made.length === layers.length ? (made[i]?.created_by ?? null) : null,
  }))
}

function annotationsOf(manifest: ManifestRow): [string, string][] {
  const annotations = manifest.record.annotations
  if (!annotations || typeof annotations !== 'object') return []
  return Object.entries(annotations as Record<string, unknown>)
    .filter((e): e is [string, string] => typeof e[1] === 'string')
    .sort(([a], [b]) => a.localeCompare(b))
}

/**
 * Compressed sizes as people mean them: an image's config and layers; for a multi-platform
 * image, the sum over its platforms' images (those the index has), not of their manifests.
 */
async function imageSizes(web: WebKit, manifests: ManifestRow[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>()
  const childDigests = manifests.flatMap((m) => childrenOf(m).map((c) => c.digest))
  const did = manifests[0]?.did
  const children = did ? await web.ctx.web.browse.manifestsByDigest(did, childDigests) : []
  for (const child of children) sizes.set(child.digest, child.size)
  for (const manifest of manifests) {
    const platforms = childrenOf(manifest)
    const known = platforms.filter((c) => sizes.has(c.digest))
    sizes.set(
      manifest.digest,
      platforms.length > 0 && known.length === platforms.length
        ? known.reduce((sum, c) => sum + sizes.get(c.digest)!, 0)
        : manifest.size,
    )
  }
  return sizes
}

/** Images with no tag that are not a platform of a multi-platform image either. */
function untaggedCount(images: ManifestRow[], tags: TagRow[]): number {
  const reached = new Set(tags.map((t) => t.digest))
  for (const image of images) for (const child of childrenOf(image)) reached.add(child.digest)
  return images.filter((m) => !reached.has(m.digest)).length
}

function withPaths(repos: RepoSummary[]): (RepoSummary & { path: string })[] {
  return repos.map((r) => ({ ...r, path: repoPath(r, r.repository) }))
}

function byArtifactType(referrers: ManifestRow[]): [string, ManifestRow[]][] {
  const groups = new Map<string, ManifestRow[]>()
  for (const referrer of referrers) {
    const type = referrer.artifactType ?? referrer.mediaType
    groups.set(type, [...(groups.get(type) ?? []), referrer])
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b))
}

export function registerBrowseRoutes(app: FastifyInstance, web: WebKit): void {
  const { ctx } = web
  const browse = ctx.web.browse
  const registryHost = web.base.host

  app.get('/', async (request, reply) => {
    const [recent, popular] = await Promise.all([
      browse.recentRepositories(12),
      browse.popularRepositories(6),
    ])
    const frame = await web.frame(request, reply, 'Home')
    return sendPage(
      reply,
      'home',
      { ...frame, hideSearch: true },
      { recent: withPaths(recent), popular: withPaths(popular) },
    )
  })

  app.get('/search', async (request, reply) => {
    const query = field(request.query, 'q').trim().slice(0, MAX_SEARCH_LENGTH)
    const pageNumber = Math.min(
      MAX_SEARCH_PAGE,
      Math.max(1, Number.parseInt(field(request.query, 'page'), 10) || 1),
    )
    const found = query
      ? await browse.search(query, (pageNumber - 1) * SEARCH_PAGE_SIZE, SEARCH_PAGE_SIZE)
      : { results: [], more: false }
    const frame = await web.frame(request, reply, query ? `Search: ${query}` : 'Search')
    return sendPage(
      reply,
      'search',
      { ...frame, query },
      {
        query,
        page: pageNumber,
        results: withPaths(found.results),
        more: found.more && pageNumber < MAX_SEARCH_PAGE,
      },
    )
  })

  app.get('/u/:identity', async (request, reply) => {
    const { identity } = request.params as { identity: string }
    const owner = await resolveOwner(web, identity)
    if (!owner) return web.error(request, reply, 404, `${identity} is not a known account.`)
    const [account, repositories, stars, holds] = await Promise.all([
      browse.account(owner.did),
      browse.repositoriesOf(owner.did),
      browse.starsBy(owner.did),
      browse.holdsFor(owner.did, { includeOpen: false }),
    ])
    return web.page(request, reply, 'user', ownerName(owner), {
      owner,
      displayName: account?.displayName ?? null,
      repositories: withPaths(repositories),
      stars: stars.map((s) => ({
        ...s,
        path: repoPath({ did: s.subjectDid, handle: s.subjectHandle }, s.repository),
      })),
      holds,
    })
  })

  app.get('/r/*', async (request, reply) => {
    const parsed = parseRepoPath((request.params as { '*': string })['*'])
    if (!parsed) return web.error(request, reply, 404, 'That is not a repository name.')
    const owner = await resolveOwner(web, parsed.identity)
    if (!owner) return web.error(request, reply, 404, `${parsed.identity} is not a known account.`)
    return parsed.ref === undefined
      ? repositoryPage(request, reply, owner, parsed.repository)
      : manifestPage(request, reply, owner, parsed.repository, parsed.ref)
  })

  /** The client the viewer wants pull commands for (signed out: docker). */
  async function clientOf(viewer: { did: string } | null): Promise<string | null> {
    return viewer ? ((await browse.account(viewer.did))?.ociClient ?? null) : null
  }

  async function repositoryPage(
    request: FastifyRequest,
    reply: FastifyReply,
    owner: Owner,
    repository: string,
  ): Promise<FastifyReply> {
    const [tags, manifests] = await Promise.all([
      browse.tags(owner.did, repository),
      browse.manifests(owner.did, repository),
    ])
    const images = manifests.filter((m) => m.subjectDigest === null)
    if (tags.length === 0 && images.length === 0) {
      return web.error(request, reply, 404, `${ownerName(owner)}/${repository} holds no images.`)
    }
    const viewer = await web.currentUser(request)
    // The newest tag of an image (not of a signature or SBOM) is what the page is about.
    const latestTag = tags.find((t) => t.manifest && t.manifest.subjectDigest === null)
    const latest = latestTag?.manifest ?? images[0] ?? null
    const digests = [...new Set([...tags.map((t) => t.digest), ...images.map((m) => m.digest)])]
    const [repoPage, stars, starKeys, pulls, referrers] = await Promise.all([
      browse.repoPage(owner.did, repository),
      browse.starCount(owner.did, repository),
      viewer ? browse.starKeys(viewer.did, owner.did, repository) : Promise.resolve([]),
      browse.pullCount(owner.did, repository),
      browse.referrers(owner.did, digests),
    ])
    const { image, platform } = latest
      ? await imageOf(web, latest)
      : { image: null, platform: null }
    const config =
      image?.configDigest && image.holdDid
        ? await ctx.web.configs.get(image.holdDid, image.configDigest)
        : null
    const readme =
      repoPage?.description ?? latest?.description ?? images.find((m) => m.description)?.description
    const holdDid = latest?.holdDid ?? null
    const sizes = await imageSizes(
      web,
      tags.flatMap((t) => (t.manifest ? [t.manifest] : [])),
    )
    const name = `${registryHost}/${ownerName(owner)}/${repository}`
    return web.page(request, reply, 'repository', `${ownerName(owner)}/${repository}`, {
      owner,
      repository,
      path: repoPath(owner, repository),
      tags: tags.map((t: TagRow) => ({
        ...t,
        path: repoPath(owner, repository, t.tag),
        size: t.manifest ? (sizes.get(t.digest) ?? t.manifest.size) : null,
      })),
      untagged: untaggedCount(images, tags),
      readmeHtml: readme ? renderMarkdown(readme) : null,
      repoPageDescription: repoPage?.description ?? '',
      image,
      imagePlatform: platform,
      layers: image ? layersOf(image, config) : [],
      annotations: latest ? annotationsOf(latest) : [],
      referrers: byArtifactType(referrers),
      stars,
      starred: starKeys.length > 0,
      pulls,
      hold: holdDid ? { did: holdDid, health: await browse.holdHealth(holdDid) } : null,
      pullCommand: pullCommand(
        `${name}${latestTag ? `:${latestTag.tag}` : ''}`,
        await clientOf(viewer),
      ),
      isOwner: viewer?.did === owner.did,
      repoPath,
    })
  }

  async function manifestPage(
    request: FastifyRequest,
    reply: FastifyReply,
    owner: Owner,
    repository: string,
    ref: string,
  ): Promise<FastifyReply> {
    const isDigest = ref.includes(':')
    let manifest: ManifestRow | null = null
    let tag: string | null = null
    if (isDigest) {
      manifest = await browse.manifest(owner.did, ref)
    } else {
      const found = (await browse.tags(owner.did, repository)).find((t) => t.tag === ref)
      tag = found ? ref : null
      manifest = found?.manifest ?? null
    }
    if (!manifest) {
      return web.error(request, reply, 404, `${ownerName(owner)}/${repository} has no ${ref}.`)
    }
    const children = childrenOf(manifest)
    const config =
      children.length === 0 && manifest.configDigest && manifest.holdDid
        ? await ctx.web.configs.get(manifest.holdDid, manifest.configDigest)
        : null
    const referrers = await browse.referrers(owner.did, [manifest.digest])
    const sizes = await imageSizes(web, [manifest])
    const name = `${registryHost}/${ownerName(owner)}/${repository}`
    return web.page(request, reply, 'manifest', `${ownerName(owner)}/${repository}:${ref}`, {
      owner,
      repository,
      repoPath: repoPath(owner, repository),
      ref,
      tag,
      manifest,
      size: sizes.get(manifest.digest) ?? manifest.size,
      children: children.map((c) => ({
        ...c,
        path: repoPath(owner, repository, c.digest),
        imageSize: sizes.get(c.digest) ?? null,
      })),
      layers: children.length === 0 ? layersOf(manifest, config) : [],
      config,
      annotations: annotationsOf(manifest),
      referrers: referrers.map((r) => ({ ...r, path: repoPath(owner, repository, r.digest) })),
      rawManifest: await rawManifest(owner, manifest),
      pullCommand: pullCommand(
        `${name}${tag ? `:${tag}` : `@${manifest.digest}`}`,
        await clientOf(await web.currentUser(request)),
      ),
      verifyCommand: `atcr verify ${name}@${manifest.digest}`,
    })
  }

  /** The manifest's exact bytes from its owner's PDS, indented; the record when unreadable. */
  async function rawManifest(owner: Owner, manifest: ManifestRow): Promise<string> {
    try {
      const identity = await ctx.identity.resolveIdentity(owner.did)
      const pdsOwner = { did: owner.did, pds: identity.pdsEndpoint }
      const stored = await ctx.registry.manifests.get(pdsOwner, manifest.digest)
      if (stored) {
        const bytes = await ctx.registry.manifests.bytes(pdsOwner, stored)
        return JSON.stringify(JSON.parse(Buffer.from(bytes).toString('utf8')), null, 2)
      }
    } catch (error) {
      ctx.logger.debug({ err: error, digest: manifest.digest }, 'manifest bytes not read')
    }
    return JSON.stringify(manifest.record, null, 2)
  }
}
