// A service's own secret files: an ES256 (P-256) signing key, and an AES-256 sealing key.
// Each is generated on first start and read back on every later one; losing them logs
// every user out.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto'
import { link, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { calculateJwkThumbprint, exportJWK } from 'jose'

export class AuthKeyFileError extends Error {
  override readonly name = 'AuthKeyFileError'
  readonly path: string
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`key file ${path}: ${reason}`, options)
    this.path = path
  }
}

export interface TokenSigningKey {
  privateKey: KeyObject
  publicKey: KeyObject
  /** RFC 7638 thumbprint of the public key, written as the tokens' `kid`. */
  kid: string
}

/** Loads a P-256 signing key (PKCS#8 PEM), creating it on first use. */
export async function loadOrCreateTokenKey(path: string): Promise<TokenSigningKey> {
  const pem = await loadOrCreateSecretFile(path, () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  })
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' })
  } catch (cause) {
    throw new AuthKeyFileError(path, 'not a private key in PEM', { cause })
  }
  if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new AuthKeyFileError(path, 'expected a P-256 (ES256) key')
  }
  const publicKey = createPublicKey(privateKey)
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey))
  return { privateKey, publicKey, kid }
}

const SESSION_KEY_BYTES = 32

/** Loads the session sealing key (32 random bytes, base64), creating it on first use. */
export async function loadOrCreateSessionKey(path: string): Promise<Buffer> {
  const text = await loadOrCreateSecretFile(path, () =>
    randomBytes(SESSION_KEY_BYTES).toString('base64'),
  )
  const key = Buffer.from(text.trim(), 'base64')
  if (key.length !== SESSION_KEY_BYTES) {
    throw new AuthKeyFileError(path, `expected ${SESSION_KEY_BYTES} bytes in base64`)
  }
  return key
}

/**
 * The file's text; when it does not exist, `create()`'s text is written first (mode 0600,
 * in a 0700 folder). Written aside and linked into place, so the file never exists
 * half-written and two processes starting together end up with the same secret.
 */
async function loadOrCreateSecretFile(path: string, create: () => string): Promise<string> {
  const existing = await readSecretFile(path)
  if (existing !== null) return existing
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const text = `${create().trim()}\n`
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const file = await open(temporary, 'wx', 0o600)
    try {
      await file.writeFile(text)
      await file.sync()
    } finally {
      await file.close()
    }
    await link(temporary, path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = await readSecretFile(path)
      if (raced !== null) return raced
    }
    throw new AuthKeyFileError(path, (error as Error).message, { cause: error })
  } finally {
    await rm(temporary, { force: true })
  }
  return text
}

async function readSecretFile(path: string): Promise<string | null> {
  try {
    if (process.platform !== 'win32') {
      const info = await stat(path)
      if ((info.mode & 0o077) !== 0) {
        const octal = (info.mode & 0o777).toString(8).padStart(3, '0')
        throw new AuthKeyFileError(
          path,
          `mode ${octal} lets other users read it; run chmod 600 ${path}`,
        )
      }
    }
    return await readFile(path, 'utf8')
  } catch (error) {
    if (error instanceof AuthKeyFileError) throw error
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new AuthKeyFileError(path, (error as Error).message, { cause: error })
  }
}
