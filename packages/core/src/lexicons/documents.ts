import { type LexiconDoc, Lexicons } from '@atproto/lexicon'
import documentsJson from './documents.json' with { type: 'json' }

// documents.json is lexicons/**.json bundled by scripts/gen-lexicons.ts, so the package does not
// depend on where the repository's lexicons/ folder sits at run time.
const sourceDocuments = documentsJson as unknown as LexiconDoc[]

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

/** ATCR's lexicon documents exactly as in lexicons/ (frozen: clone before handing them on). */
export const lexiconDocuments: readonly LexiconDoc[] = deepFreeze(structuredClone(sourceDocuments))

// @atproto/lexicon cannot validate a `ref` that points at a record definition inside an array
// or object ("Unexpected lexicon type: record"); getLayersForManifest's output does exactly that
// (its items are io.atcr.hold.layer records). For validation we give every record its object
// schema as an extra definition and point such refs there. The published documents stay as they are.
const RECORD_OBJECT_DEF = 'recordObject'

function recordMainIds(docs: readonly LexiconDoc[]): Set<string> {
  return new Set(docs.filter((d) => d.defs.main?.type === 'record').map((d) => d.id))
}

function redirectRecordRefs(node: unknown, docId: string, records: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) redirectRecordRefs(item, docId, records)
    return
  }
  if (!node || typeof node !== 'object') return
  const obj = node as Record<string, unknown>
  if (obj.type === 'ref' && typeof obj.ref === 'string') {
    const target = obj.ref.startsWith('#') ? `${docId}${obj.ref}` : obj.ref
    const id = target.endsWith('#main') ? target.slice(0, -'#main'.length) : target
    if (records.has(id)) obj.ref = `${id}#${RECORD_OBJECT_DEF}`
    return
  }
  for (const child of Object.values(obj)) redirectRecordRefs(child, docId, records)
}

/**
 * Fresh, mutable copies of the documents, adjusted for validation (see above). Hand these to
 * `@atproto/xrpc-server`'s `createServer`, which mutates what it is given.
 */
export function serverLexiconDocuments(): LexiconDoc[] {
  const docs = structuredClone(sourceDocuments)
  const records = recordMainIds(docs)
  for (const doc of docs) {
    redirectRecordRefs(doc.defs, doc.id, records)
    const main = doc.defs.main
    if (main?.type === 'record') {
      if (doc.defs[RECORD_OBJECT_DEF])
        throw new Error(`${doc.id} already has a ${RECORD_OBJECT_DEF}`)
      doc.defs[RECORD_OBJECT_DEF] = structuredClone(main.record)
    }
  }
  return docs
}

/** All ATCR lexicons, loaded once; the validators in this module use it. */
export const lexicons: Lexicons = new Lexicons(serverLexiconDocuments())
