// An image's config blob (env, entrypoint, labels, and the history that says which command
// made each layer), read from its hold the way pulls are (com.atproto.sync.getBlob, then
// the presigned URL it redirects to), bounded in size and time, checked against its digest,
// and cached by digest (content-addressed: it never changes).
import { readBoundedText, TtlCache } from '@atcr/core/identity'
import { digestOf } from '@atcr/core/oci'
import { NoSessionError } from '../auth/types.ts'
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
const TIMEOUT_MS = 10_000

export class ImageConfigs {
  readonly #registry: Registry
  readonly #cache = new TtlCache<ImageConfig | null>({ ttlMs: 60 * 60_000, maxEntries: 500 })

  constructor(registry: Registry) {
    this.#registry = registry
  }

  /** The config, or null when the hold cannot give it (down, private, too large...). */
  async get(holdDid: string, digest: string, viewer: string | null): Promise<ImageConfig | null> {
    const cached = this.#cache.get(digest)
    if (cached) return cached
    try {
      const config = await this.#load(holdDid, digest, viewer)
      this.#cache.set(digest, config)
      return config
    } catch (error) {
      this.#registry.ctx.logger.debug({ err: error, digest }, 'image config not read')
      return null
    }
  }

  async #load(holdDid: string, digest: string, viewer: string | null): Promise<ImageConfig> {
    const holds = this.#registry.holds
    const hold = await holds.resolve(holdDid)
    const ask = (caller: string | null) => holds.getBlob(hold, digest, { method: 'GET', caller })
    let response = await ask(viewer).catch((error: unknown) => {
      if (error instanceof NoSessionError) return ask(null)
      throw error
    })
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
