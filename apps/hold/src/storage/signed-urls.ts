// Presigned GET URLs for storage that cannot presign itself (the filesystem): the hold's
// own `/storage/<path>?expires=...&signature=...`, signed with an HMAC key, served by the
// hold without a service token (the signature is the permission, as with S3). Clients
// (through the AppView's redirect) then read blobs straight from the hold.
import { createHmac, timingSafeEqual } from 'node:crypto'

/** Where signed storage URLs are served on the hold. */
export const SIGNED_STORAGE_PREFIX = '/storage/'

export class StorageUrlSigner {
  readonly #baseUrl: string
  readonly #key: Uint8Array
  readonly #ttlSeconds: number
  readonly #now: () => number

  /** `key`: a secret of 32 bytes or more; `baseUrl`: the hold's public URL. */
  constructor(options: {
    baseUrl: string
    key: Uint8Array
    ttlSeconds: number
    now?: () => number
  }) {
    if (options.key.byteLength < 32) throw new RangeError('a URL signing key needs 32 bytes')
    this.#baseUrl = options.baseUrl.replace(/\/+$/, '')
    this.#key = options.key
    this.#ttlSeconds = options.ttlSeconds
    this.#now = options.now ?? Date.now
  }

  sign(path: string): string {
    const expires = Math.floor(this.#now() / 1000) + this.#ttlSeconds
    const query = new URLSearchParams({
      expires: String(expires),
      signature: this.#mac(path, expires),
    })
    return `${this.#baseUrl}${SIGNED_STORAGE_PREFIX}${path}?${query}`
  }

  /** Whether a request for `path` carries a signature of ours that has not expired. */
  verify(path: string, expires: string | undefined, signature: string | undefined): boolean {
    if (expires === undefined || signature === undefined || !/^\d{1,12}$/.test(expires)) {
      return false
    }
    const until = Number(expires)
    if (until * 1000 < this.#now()) return false
    const expected = Buffer.from(this.#mac(path, until))
    const given = Buffer.from(signature)
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  #mac(path: string, expires: number): string {
    return createHmac('sha256', this.#key).update(`GET\n${path}\n${expires}`).digest('base64url')
  }
}
