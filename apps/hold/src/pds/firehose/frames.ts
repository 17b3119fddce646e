import { encode } from '@atproto/lex-cbor'
import type { LexMap } from '@atproto/lex-data'

/**
 * subscribeRepos frames: two DAG-CBOR objects back to back, a header then a body.
 * A message header is `{op: 1, t: '#commit'}`; an error header is `{op: -1}` with an
 * `{error, message}` body, after which the server closes the connection.
 */
export function messageFrame(type: string, body: LexMap): Uint8Array {
  return Buffer.concat([encode({ op: 1, t: type }), encode(body)])
}

export function errorFrame(error: string, message?: string): Uint8Array {
  const body: LexMap = message === undefined ? { error } : { error, message }
  return Buffer.concat([encode({ op: -1 }), encode(body)])
}
