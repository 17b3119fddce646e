import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import { IdentityError } from './errors.ts'

export class KeyFileError extends IdentityError {
  readonly path: string
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super('KeyFileInvalid', `key file ${path}: ${reason}`, options)
    this.name = 'KeyFileError'
    this.path = path
  }
}

/** The key file can be read or written by other users: refuse it, as ssh does. */
export class KeyFilePermissionsError extends IdentityError {
  readonly path: string
  readonly fileMode: number
  constructor(path: string, fileMode: number) {
    const octal = (fileMode & 0o777).toString(8).padStart(3, '0')
    super(
      'KeyFileInsecure',
      `key file ${path} has mode ${octal}: other users may read it; run chmod 600 ${path}`,
    )
    this.name = 'KeyFilePermissionsError'
    this.path = path
    this.fileMode = fileMode
  }
}

export interface KeyFileOptions {
  /** Refuse files readable or writable by group or others (default true; not on Windows). */
  checkPermissions?: boolean
}

const HEX_KEY = /^[0-9a-f]{64}$/i

/**
 * Loads the secp256k1 (K256) private key stored as hex in `path`. The key is exportable,
 * so it can be written back or handed to `@atproto/repo`.
 */
export async function loadKeypair(
  path: string,
  options: KeyFileOptions = {},
): Promise<Secp256k1Keypair> {
  let text: string
  try {
    if (options.checkPermissions !== false && process.platform !== 'win32') {
      const info = await stat(path)
      if ((info.mode & 0o077) !== 0) throw new KeyFilePermissionsError(path, info.mode)
    }
    text = await readFile(path, 'utf8')
  } catch (error) {
    if (error instanceof IdentityError) throw error
    throw new KeyFileError(path, (error as Error).message, { cause: error })
  }
  const hex = text.trim()
  if (!HEX_KEY.test(hex))
    throw new KeyFileError(path, 'expected 64 hex characters (a K256 private key)')
  try {
    return await Secp256k1Keypair.import(hex.toLowerCase(), { exportable: true })
  } catch (cause) {
    throw new KeyFileError(path, 'not a valid secp256k1 private key', { cause })
  }
}

/**
 * Loads the K256 keypair in `path`, or generates one and stores it there (hex, mode 0600,
 * created exclusively so two processes cannot both write one). Later calls return the
 * same key.
 */
export async function loadOrCreateKeypair(
  path: string,
  options: KeyFileOptions = {},
): Promise<Secp256k1Keypair> {
  if (await exists(path)) return loadKeypair(path, options)
  const keypair = await Secp256k1Keypair.create({ exportable: true })
  const hex = Buffer.from(await keypair.export()).toString('hex')
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  // Written aside, then linked into place: the key file never exists half-written, and
  // link() refuses to replace a key another process created meanwhile.
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const file = await open(temporary, 'wx', 0o600)
    try {
      await file.writeFile(`${hex}\n`)
      await file.sync()
    } finally {
      await file.close()
    }
    await link(temporary, path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return loadKeypair(path, options)
    throw new KeyFileError(path, (error as Error).message, { cause: error })
  } finally {
    await rm(temporary, { force: true })
  }
  return keypair
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new KeyFileError(path, (error as Error).message, { cause: error })
  }
}

/**
 * Loads the PLC rotation key (K256, hex). It must exist: a rotation key is the recovery
 * key of the DID, so it is never generated silently here.
 */
export function loadRotationKey(
  path: string,
  options: KeyFileOptions = {},
): Promise<Secp256k1Keypair> {
  return loadKeypair(path, options)
}
