import { createHash } from 'node:crypto'
import { isValidRecordKey } from '@atproto/syntax'

// Deterministic record keys: writing the same thing twice lands on the same record.

/** Record key of singletons: io.atcr.hold.captain and io.atcr.sailor.profile. */
export const SELF_RKEY = 'self'

export class RecordKeyError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RecordKeyError'
  }
}

function ensureRkey(rkey: string, what: string): string {
  if (!isValidRecordKey(rkey))
    throw new RecordKeyError(`${what} is not a valid record key: ${rkey}`)
  return rkey
}

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/

function digestHex(digest: string): string {
  if (!DIGEST.test(digest)) {
    throw new RecordKeyError(`not a sha256 or sha512 digest in lowercase hex: ${digest}`)
  }
  return digest.slice(digest.indexOf(':') + 1)
}

/** io.atcr.manifest key: the digest's hex part (64 characters for sha256, 128 for sha512). */
export function manifestRkey(digest: string): string {
  return digestHex(digest)
}

/** The digest a manifest (or scan) record key stands for; the hex length tells the algorithm. */
export function digestFromManifestRkey(rkey: string): string {
  if (/^[a-f0-9]{64}$/.test(rkey)) return `sha256:${rkey}`
  if (/^[a-f0-9]{128}$/.test(rkey)) return `sha512:${rkey}`
  throw new RecordKeyError(`not a manifest record key: ${rkey}`)
}

/** io.atcr.hold.scan key: the scanned manifest's digest hex, so a rescan overwrites. */
export function scanRkey(manifestDigest: string): string {
  return digestHex(manifestDigest)
}

// OCI repository names cannot contain `~` or `:`, nor tags `:` or `~`, so mapping `/` to `~`
// and joining with `:` is reversible; all of these are record-key characters.
function escapeRepository(repository: string): string {
  if (repository === '' || /[~:]/.test(repository)) {
    throw new RecordKeyError(`repository name cannot form a record key: ${repository}`)
  }
  return repository.replaceAll('/', '~')
}

/** io.atcr.tag key: `tools/app` + `latest` gives `tools~app:latest`. */
export function tagRkey(repository: string, tag: string): string {
  if (tag === '' || /[~:/]/.test(tag))
    throw new RecordKeyError(`tag cannot form a record key: ${tag}`)
  return ensureRkey(`${escapeRepository(repository)}:${tag}`, 'tag key')
}

/** Reverses `tagRkey`. */
export function parseTagRkey(rkey: string): { repository: string; tag: string } {
  const sep = rkey.indexOf(':')
  if (
    !isValidRecordKey(rkey) ||
    sep <= 0 ||
    sep === rkey.length - 1 ||
    rkey.includes(':', sep + 1)
  ) {
    throw new RecordKeyError(`not a tag record key: ${rkey}`)
  }
  return { repository: rkey.slice(0, sep).replaceAll('~', '/'), tag: rkey.slice(sep + 1) }
}

/**
 * io.atcr.repo.page key: the repository name. Record keys cannot hold `/`, so a nested name maps
 * `/` to `~` as in tag keys (`tools/app` gives `tools~app`); flat names are unchanged.
 */
export function repoPageRkey(repository: string): string {
  return ensureRkey(escapeRepository(repository), 'repository page key')
}

/** Reverses `repoPageRkey`. */
export function parseRepoPageRkey(rkey: string): string {
  if (!isValidRecordKey(rkey) || rkey.includes(':')) {
    throw new RecordKeyError(`not a repository page record key: ${rkey}`)
  }
  return rkey.replaceAll('~', '/')
}

// The stats lexicon fixes the key as base32(sha256(ownerDid + "/" + repository)[:16]) without
// naming a base32 flavour. Padding is out: `=` is not a record-key character. We use the RFC 4648
// alphabet in lowercase, the flavour atproto itself uses (did:plc identifiers, base32 CIDs).
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

function base32(bytes: Uint8Array): string {
  let out = ''
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += BASE32[(buffer >>> bits) & 31]
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31]
  return out
}

/** io.atcr.hold.stats key: 26 base32 characters from the owner DID and repository name. */
export function statsRkey(ownerDid: string, repository: string): string {
  return hashKey(`${ownerDid}/${repository}`)
}

/**
 * io.atcr.hold.crew key: derived from the member DID (the lexicon leaves it open), so a
 * member has at most one crew record and joining twice overwrites. Readers must still
 * match on the record's `member` field: other implementations may use other keys.
 */
export function crewRkey(memberDid: string): string {
  return hashKey(memberDid)
}

function hashKey(text: string): string {
  return base32(createHash('sha256').update(text).digest().subarray(0, 16))
}
