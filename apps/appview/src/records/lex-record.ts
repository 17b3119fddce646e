// What lex-client's record calls take: a repository as a DID string and a record as a typed
// map. Our records are checked against our own lexicons (@atcr/core/lexicons) before they
// get here, so these only name the types.
import type { DidString, NsidString, TypedLexMap } from '@atproto/lex-client'

/** The option naming the repository a record call acts on. */
export function inRepo(did: string): { repo: DidString } {
  return { repo: did as DidString }
}

/** A record as lex-client's record calls take it (its `$type` names the collection). */
export function lexRecord(record: { $type: string }): TypedLexMap<NsidString> {
  return record as unknown as TypedLexMap<NsidString>
}
