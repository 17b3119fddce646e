// An image's config blob (env, entrypoint, labels, and the history that says which command
// made each layer), read from its hold the way an anonymous pull does (com.atproto.sync.getBlob,
// then the presigned URL it redirects to), bounded in size and time, checked against its
// digest, and cached by digest (content-addressed: it never changes). Private holds' configs
// are not shown.
import { readBoundedText, TtlCache } from '@atcr/core/identity'
import { digestOf } from '@atcr/core/oci'
import type { Registry } from '../registry/registry.ts'

/** The parts of an OCI image config the pages show. */
export interface ImageConfig {
  architecture?: string
  os?: string
  created?: string
  config?: {
    Env?: string[]
    Entrypoint?: string[] | null
    Cmd?: string[] | null
    WorkingDir?: string
    User?: string
    ExposedPorts?: Record<string, unknown>
    Labels?: Record<string, string> | null
  }
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[]
}

/** Configs larger than this are not shown (a real one is a few KB). */
const MAX_CONFIG_BYTES = 1024 * 1024
/** A page waits this long for a config at most (the read goes on and fills the cache). */
const WAIT_MS = 5_000
const TIMEOUT_MS = 10_000
/** A config that could not be read is not asked for again this soon (a hold down...). */
const FAILURE_TTL_MS = 60_000

export class ImageConfigs {
  readonly #registry: Registry
  readonly #cache: TtlCache<ImageConfig>
  readonly #failed = new TtlCache<true>({ ttlMs: FAILURE_TTL_MS, maxEntries: 1000 })

  constructor(registry: Registry) {
    this.#registry = registry
    this.#cache = new TtlCache({
      ttlMs: 60 * 60_000,
      maxEntries: 500,
      counter: registry.ctx.metrics.cacheCounter('image_config'),
    })
  }

  /** The config, or null when the hold cannot give it (down, private, too large, slow...). */
  async get(holdDid: string, digest: string): Promise<ImageConfig | null> {
    if (this.#failed.get(digest)) return null
    const loading = this.#cache
      .getOrLoad(digest, () => this.#load(holdDid, digest))
      .catch((error: unknown) => {
        this.#failed.set(digest, true)
        this.#registry.ctx.logger.debug({ err: error, digest }, 'image config not read')
        return null
      })
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), WAIT_MS)
    })
    try {
      return await Promise.race([loading, waited])
    } finally {
      clearTimeout(timer)
    }
  }

  async #load(holdDid: string, digest: string): Promise<ImageConfig> {
    const holds = this.#registry.holds
    const hold = await holds.resolve(holdDid)
    // Asked anonymously: what a page shows anyone must be what the hold shows anyone.
    let response = await holds.getBlob(hold, digest, { method: 'GET', caller: null })
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel()
      const location = response.headers.get('location')
      if (!location) throw new Error(`hold ${holdDid} redirected nowhere`)
      response = await this.#registry.ctx.fetch(new URL(location, hold.endpoint).href, {
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      })
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      throw new Error(`the config blob answered ${response.status}`)
    }
    const text = await readBoundedText(response, MAX_CONFIG_BYTES)
    const algorithm = digest.startsWith('sha512:') ? 'sha512' : 'sha256'
    if (digestOf(Buffer.from(text), algorithm) !== digest) {
      throw new Error(`the config blob does not match ${digest}`)
    }
    return JSON.parse(text) as ImageConfig
  }
}
