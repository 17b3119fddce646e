// AES-256-GCM seals under the AppView's session key, with a context string (table and row
// key) bound in as associated data, so that a sealed value copied onto another row does not
// open. Used for the OAuth tables; pds_session keeps its own format (session-store.ts).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

const VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16

export class UnsealError extends Error {
  override readonly name = 'UnsealError'
}

export class Sealer {
  readonly #key: Buffer

  constructor(key: Buffer) {
    if (key.length !== 32) throw new RangeError('the sealing key must be 32 bytes')
    this.#key = key
  }

  seal(context: string, value: unknown): Buffer {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(Buffer.from(`atcr seal v${VERSION} ${context}`))
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
    return Buffer.concat([Buffer.of(VERSION), iv, cipher.getAuthTag(), body])
  }

  unseal<T>(context: string, sealed: Uint8Array): T {
    const bytes = Buffer.from(sealed)
    if (bytes.length < 1 + IV_BYTES + TAG_BYTES || bytes[0] !== VERSION) {
      throw new UnsealError(`sealed value of ${context} has an unknown format`)
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, bytes.subarray(1, 1 + IV_BYTES), {
        authTagLength: TAG_BYTES,
      })
      decipher.setAAD(Buffer.from(`atcr seal v${VERSION} ${context}`))
      decipher.setAuthTag(bytes.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES))
      const plain = Buffer.concat([
        decipher.update(bytes.subarray(1 + IV_BYTES + TAG_BYTES)),
        decipher.final(),
      ])
      return JSON.parse(plain.toString('utf8')) as T
    } catch (cause) {
      throw new UnsealError(`sealed value of ${context} does not open with this key`, { cause })
    }
  }
}
