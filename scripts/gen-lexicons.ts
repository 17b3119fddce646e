// Derives packages/core/src/lexicons/{documents.json,generated.ts} from lexicons/**.json.
// `node scripts/gen-lexicons.ts` writes them; `--check` exits 1 when they are stale.
// A test in packages/core runs the same rendering, so a lexicon edit without a re-run fails CI.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const projectRoot = fileURLToPath(new URL('..', import.meta.url))
const NSID_PREFIX = 'io.atcr.'

// The main record types get short names where the last NSID segment alone would be vague.
const RECORD_TYPE_NAMES: Record<string, string> = {
  'io.atcr.repo.page': 'RepoPageRecord',
  'io.atcr.sailor.profile': 'SailorProfileRecord',
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type JsonObject = { [key: string]: Json }

interface Doc {
  id: string
  defs: Record<string, JsonObject>
}

export interface GeneratedFile {
  path: string
  content: string
}

function listJsonFiles(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...listJsonFiles(full))
    else if (entry.name.endsWith('.json')) out.push(full)
  }
  return out
}

export function readLexiconDocuments(root = projectRoot): Doc[] {
  const dir = join(root, 'lexicons')
  const docs = listJsonFiles(dir).map((file) => {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as Doc
    const expectedId = relative(dir, file)
      .replace(/\.json$/, '')
      .split(/[\\/]/)
      .join('.')
    if (doc.id !== expectedId) throw new Error(`${file}: id ${doc.id} does not match its path`)
    return doc
  })
  return docs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

const pascal = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)

function nsidConstName(id: string): string {
  if (!id.startsWith(NSID_PREFIX)) throw new Error(`unexpected NSID authority: ${id}`)
  const [first = '', ...rest] = id.slice(NSID_PREFIX.length).split('.')
  return first + rest.map(pascal).join('')
}

function lastSegment(id: string): string {
  return id.slice(id.lastIndexOf('.') + 1)
}

class Namer {
  private readonly byRef = new Map<string, string>()
  private readonly taken = new Set<string>()

  constructor(docs: Doc[]) {
    for (const doc of docs) {
      for (const [name, def] of Object.entries(doc.defs)) {
        if (name === 'main') {
          if (def.type === 'record') {
            this.add(doc.id, RECORD_TYPE_NAMES[doc.id] ?? `${pascal(lastSegment(doc.id))}Record`)
          }
        } else {
          this.add(`${doc.id}#${name}`, pascal(name))
        }
      }
    }
  }

  private add(ref: string, name: string): void {
    if (this.taken.has(name)) throw new Error(`type name ${name} is used twice (${ref})`)
    this.taken.add(name)
    this.byRef.set(ref, name)
  }

  method(id: string, part: 'Params' | 'Input' | 'Output' | 'Message'): string {
    const name = `${pascal(lastSegment(id))}${part}`
    if (this.taken.has(name)) throw new Error(`type name ${name} is used twice (${id})`)
    this.taken.add(name)
    return name
  }

  ref(ref: string, docId: string): string {
    let full = ref.startsWith('#') ? `${docId}${ref}` : ref
    if (full.endsWith('#main')) full = full.slice(0, -'#main'.length)
    const name = this.byRef.get(full)
    if (!name) throw new Error(`${docId}: cannot name the type of ref ${ref}`)
    return name
  }
}

const str = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`

function doc(text: Json | undefined, indent: string): string[] {
  if (typeof text !== 'string' || text === '') return []
  return [`${indent}/** ${text.replace(/\*\//g, '*\\/')} */`]
}

// Renders `name: type` the way Biome formats it: a union that does not fit on one line
// breaks into one `| member` per line.
function member(indent: string, key: string, members: string[]): string[] {
  const oneLine = `${indent}${key}: ${members.join(' | ')}`
  if (members.length < 2 || oneLine.length <= 100) return [oneLine]
  return [`${indent}${key}:`, ...members.map((m) => `${indent}  | ${m}`)]
}

class Renderer {
  readonly lines: string[] = []
  usesBlobRef = false
  private readonly namer: Namer

  constructor(namer: Namer) {
    this.namer = namer
  }

  // The members of a property's type union (one element unless the type is a union).
  typeOf(def: JsonObject, docId: string): string[] {
    switch (def.type) {
      case 'string':
        if (typeof def.const === 'string') return [str(def.const)]
        if (Array.isArray(def.knownValues)) {
          return [...def.knownValues.map((v) => str(String(v))), '(string & {})']
        }
        return ['string']
      case 'integer':
        return ['number']
      case 'boolean':
        return ['boolean']
      case 'unknown':
        return ['unknown']
      case 'bytes':
        return ['Uint8Array']
      case 'blob':
        this.usesBlobRef = true
        return ['BlobRef']
      case 'ref':
        return [this.namer.ref(String(def.ref), docId)]
      case 'union':
        return (def.refs as string[]).map((r) => this.namer.ref(r, docId))
      case 'array': {
        const items = this.typeOf(def.items as JsonObject, docId)
        return [items.length === 1 ? `${items[0]}[]` : `(${items.join(' | ')})[]`]
      }
      default:
        throw new Error(`${docId}: no TypeScript mapping for lexicon type ${String(def.type)}`)
    }
  }

  object(name: string, def: JsonObject, docId: string, $type: string | undefined, opt: boolean) {
    const props = (def.properties ?? {}) as Record<string, JsonObject>
    const required = new Set((def.required ?? []) as string[])
    const nullable = new Set((def.nullable ?? []) as string[])
    this.lines.push(...doc(def.description, ''))
    if ($type === undefined && Object.keys(props).length === 0) {
      this.lines.push(`export type ${name} = Record<string, never>`, '')
      return
    }
    this.lines.push(`export interface ${name} {`)
    if ($type !== undefined) this.lines.push(`  $type${opt ? '?' : ''}: ${str($type)}`)
    for (const [key, prop] of Object.entries(props)) {
      const types = this.typeOf(prop, docId)
      if (nullable.has(key)) types.push('null')
      const safeKey = /^[A-Za-z_$][\w$]*$/.test(key) ? key : str(key)
      this.lines.push(...doc(prop.description, '  '))
      this.lines.push(...member('  ', `${safeKey}${required.has(key) ? '' : '?'}`, types))
    }
    this.lines.push('}', '')
  }

  body(name: string, schema: JsonObject, docId: string): void {
    if (schema.type === 'object') {
      this.object(name, schema, docId, undefined, false)
    } else {
      this.lines.push(`export type ${name} = ${this.typeOf(schema, docId).join(' | ')}`, '')
    }
  }
}

function renderTypes(docs: Doc[]): string {
  const namer = new Namer(docs)
  const r = new Renderer(namer)
  const maps = {
    RecordTypes: [] as string[],
    ParamsTypes: [] as string[],
    InputTypes: [] as string[],
    OutputTypes: [] as string[],
    MessageTypes: [] as string[],
  }
  const entry = (nsid: string, type: string) => `  ${str(nsid)}: ${type}`

  for (const d of docs) {
    for (const [defName, def] of Object.entries(d.defs)) {
      if (defName !== 'main') {
        r.object(namer.ref(`#${defName}`, d.id), def, d.id, `${d.id}#${defName}`, true)
        continue
      }
      if (def.type === 'record') {
        const name = namer.ref(d.id, d.id)
        r.object(
          name,
          { ...(def.record as JsonObject), description: def.description ?? null },
          d.id,
          d.id,
          false,
        )
        maps.RecordTypes.push(entry(d.id, name))
        continue
      }
      if (def.type !== 'query' && def.type !== 'procedure' && def.type !== 'subscription') continue
      const params = def.parameters as JsonObject | undefined
      if (params) {
        const name = namer.method(d.id, 'Params')
        r.object(name, params, d.id, undefined, false)
        maps.ParamsTypes.push(entry(d.id, name))
      }
      for (const [part, map] of [
        ['Input', maps.InputTypes],
        ['Output', maps.OutputTypes],
        ['Message', maps.MessageTypes],
      ] as const) {
        const key = part.toLowerCase()
        const schema = (def[key] as JsonObject | undefined)?.schema as JsonObject | undefined
        if (!schema) continue
        const name = namer.method(d.id, part)
        r.body(name, schema, d.id)
        map.push(entry(d.id, name))
      }
    }
  }

  const out = [
    '// Generated by scripts/gen-lexicons.ts from lexicons/**.json. Do not edit by hand:',
    '// change the lexicon documents, then run `node scripts/gen-lexicons.ts`.',
  ]
  if (r.usesBlobRef) out.push('', "import type { BlobRef } from '@atproto/lexicon'")
  out.push(
    '',
    '/** Every NSID that ATCR defines, by a short name. */',
    'export const NSID = Object.freeze({',
  )
  for (const d of docs) out.push(`  ${nsidConstName(d.id)}: ${str(d.id)},`)
  out.push('} as const)', '', 'export type Nsid = (typeof NSID)[keyof typeof NSID]', '')
  out.push(...r.lines)
  const mapDocs: Record<keyof typeof maps, string> = {
    RecordTypes: 'Record type by collection NSID.',
    ParamsTypes: 'Query parameters by method NSID (methods that declare parameters).',
    InputTypes: 'JSON request body by procedure NSID (procedures with a JSON input schema).',
    OutputTypes: 'JSON response body by method NSID.',
    MessageTypes: 'Stream message by subscription NSID.',
  }
  for (const [name, entries] of Object.entries(maps)) {
    out.push(
      `/** ${mapDocs[name as keyof typeof maps]} */`,
      `export interface ${name} {`,
      ...entries,
      '}',
      '',
    )
  }
  out.push(
    'export type RecordNsid = keyof RecordTypes',
    'export type ParamsNsid = keyof ParamsTypes',
    'export type InputNsid = keyof InputTypes',
    'export type OutputNsid = keyof OutputTypes',
    'export type MessageNsid = keyof MessageTypes',
  )
  return `${out.join('\n')}\n`
}

export function renderLexiconArtifacts(root = projectRoot): GeneratedFile[] {
  const docs = readLexiconDocuments(root)
  const outDir = join(root, 'packages/core/src/lexicons')
  return [
    { path: join(outDir, 'documents.json'), content: `${JSON.stringify(docs, null, 2)}\n` },
    { path: join(outDir, 'generated.ts'), content: renderTypes(docs) },
  ]
}

function main(): void {
  const check = process.argv.includes('--check')
  let stale = false
  for (const file of renderLexiconArtifacts()) {
    let current: string | undefined
    try {
      current = readFileSync(file.path, 'utf8')
    } catch {}
    if (current === file.content) continue
    stale = true
    if (check) console.error(`stale: ${relative(projectRoot, file.path)}`)
    else writeFileSync(file.path, file.content)
  }
  if (check && stale) process.exit(1)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
