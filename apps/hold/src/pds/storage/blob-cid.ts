// An OCI blob is stored under its digest; its atproto name is the raw CID over the same
// hash (codec raw, multihash sha2-256 or sha2-512), so listBlobs can name layers and
// getBlob can take either form.
import { type DigestAlgorithm, isDigest, parseDigest } from '@atcr/core/oci'
import { type Cid, createCid, isRawCid, RAW_DATA_CODEC } from '@atproto/lex-data'

const MULTIHASH_CODES: Record<DigestAlgorithm, number> = { sha256: 0x12, sha512: 0x13 }

/** The raw CID of the blob an OCI digest names, or null for a string that is not one. */
export function cidOfDigest(digest: string): Cid | null {
  if (!isDigest(digest)) return null
  const { algorithm, hex } = parseDigest(digest)
  return createCid(RAW_DATA_CODEC, MULTIHASH_CODES[algorithm], Buffer.from(hex, 'hex'))
}

/** The OCI digest of a raw CID over sha256 or sha512, or null for any other CID. */
export function digestOfCid(cid: Cid): string | null {
  if (!isRawCid(cid)) return null
  const { code, digest } = cid.multihash
  for (const [algorithm, multihashCode] of Object.entries(MULTIHASH_CODES)) {
    if (code === multihashCode) return `${algorithm}:${Buffer.from(digest).toString('hex')}`
  }
  return null
}
