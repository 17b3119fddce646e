import { readFileSync } from 'node:fs'
import { type Document, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument } from 'yaml'
import type { z } from 'zod/v4'
import {
  ConfigError,
  type ConfigIssue,
  displayPath,
  showInput,
  showsInput,
  unknownKeyMessage,
  zodMessage,
} from './errors.ts'
import { type ConfigField, type ConfigSection, fieldsOf, skeletonOf } from './schema.ts'

export type Env = Readonly<Record<string, string | undefined>>

/** Any part of a config's input: sections and keys may be left out at every level. */
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T

export interface LoadOptions<Input = Record<string, unknown>> {
  /** YAML file to read. Omitted: defaults and environment only. Named but missing: an error. */
  file?: string
  /** Environment to read overrides from; process.env when omitted. */
  env?: Env
  /** Values merged last, over file and environment (tests, command-line flags). */
  overrides?: DeepPartial<Input>
}

type Origin = { kind: 'file' } | { kind: 'env'; name: string } | { kind: 'overrides' }

type Path = readonly PropertyKey[]

interface YamlSource {
  readonly file: string
  readonly doc: Document
  readonly lines: LineCounter
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/** The line of the entry at `path` (its key, for mapping entries), or of its nearest ancestor. */
function lineOf(src: YamlSource, path: Path): number | undefined {
  for (let n = path.length; n > 0; n--) {
    const parent = n === 1 ? src.doc.contents : src.doc.getIn(path.slice(0, n - 1), true)
    const last = path[n - 1]
    let node: unknown
    if (isMap(parent)) {
      node = parent.items.find((it) => isScalar(it.key) && String(it.key.value) === last)?.key
    } else if (isSeq(parent) && typeof last === 'number') {
      node = parent.items[last]
    }
    if (isNode(node) && node.range) return src.lines.linePos(node.range[0]).line
  }
  return undefined
}

class Loader {
  readonly issues: ConfigIssue[] = []
  readonly origins = new Map<ConfigField, Origin>()
  readonly root: ConfigSection
  yaml: YamlSource | undefined

  constructor(root: ConfigSection) {
    this.root = root
  }

  issue(path: Path, message: string, origin: Origin | undefined): void {
    const base = { path: displayPath(path), message }
    if (origin?.kind === 'env') this.issues.push({ ...base, envVar: origin.name })
    else if (origin?.kind === 'file' && this.yaml) {
      const line = lineOf(this.yaml, path)
      this.issues.push(
        line ? { ...base, file: this.yaml.file, line } : { ...base, file: this.yaml.file },
      )
    } else this.issues.push(base)
  }

  readFile(file: string): Record<string, unknown> | undefined {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const message =
        code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}`
      this.issues.push({ path: '', file, message })
      return undefined
    }
    const lines = new LineCounter()
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false })
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = lines.linePos(e.pos[0]).line
        this.issues.push({ path: '', file, line, message: `invalid YAML: ${e.message}` })
      }
      return undefined
    }
    this.yaml = { file, doc, lines }
    let value: unknown
    try {
      value = doc.toJS()
    } catch (err) {
      // An alias with no anchor, or too many aliases (a YAML bomb), only fails here.
      this.issues.push({ path: '', file, message: `invalid YAML: ${(err as Error).message}` })
      return undefined
    }
    if (value === null || value === undefined) return {}
    if (!isPlainObject(value)) {
      this.issues.push({ path: '', file, message: 'expected a mapping of sections and keys' })
      return undefined
    }
    return value
  }

  merge(
    section: ConfigSection,
    value: Record<string, unknown>,
    target: Record<string, unknown>,
    path: string[],
    origin: Origin,
  ): void {
    for (const [key, v] of Object.entries(value)) {
      if (v === undefined) continue
      const p = [...path, key]
      const node = section.byKey.get(key)
      if (!node) {
        this.issue(p, unknownKeyMessage(key, section.byKey.keys()), origin)
      } else if (node.type === 'section') {
        // `section:` with every key commented out is null in YAML: an empty section.
        if (v === null) continue
        if (!isPlainObject(v)) {
          this.issue(p, `expected a mapping of keys, got ${showInput(v)}`, origin)
          continue
        }
        this.merge(node, v, target[key] as Record<string, unknown>, p, origin)
      } else {
        target[key] = v
        this.origins.set(node, origin)
        if (node.checkItemKeys && node.itemFields && Array.isArray(v)) {
          const known = node.itemFields.map((f) => f.key)
          v.forEach((item, i) => {
            if (!isPlainObject(item)) return
            for (const k of Object.keys(item)) {
              if (!known.includes(k)) this.issue([...p, i, k], unknownKeyMessage(k, known), origin)
            }
          })
        }
      }
    }
  }

  applyEnv(env: Env, target: Record<string, unknown>): void {
    for (const field of fieldsOf(this.root)) {
      const raw = env[field.envVar]
      if (raw === undefined) continue
      const origin: Origin = { kind: 'env', name: field.envVar }
      const parsed = fromEnv(field, raw)
      if ('error' in parsed) {
        this.issue(field.path, parsed.error, origin)
        continue
      }
      let parent = target
      for (const seg of field.path.slice(0, -1)) parent = parent[seg] as Record<string, unknown>
      if ('unset' in parsed) {
        if (field.optional) {
          delete parent[field.key]
          this.origins.set(field, origin)
        }
        continue
      }
      parent[field.key] = parsed.value
      this.origins.set(field, origin)
    }
  }

  /** The field holding `path` (the path may go on inside a list value). */
  fieldAt(path: Path): ConfigField | undefined {
    let section = this.root
    for (const seg of path) {
      const node = typeof seg === 'string' ? section.byKey.get(seg) : undefined
      if (!node) return undefined
      if (node.type === 'field') return node
      section = node
    }
    return undefined
  }

  addZodIssues(issues: readonly z.core.$ZodIssue[]): void {
    for (const iss of issues) {
      const field = this.fieldAt(iss.path)
      const origin = field ? this.origins.get(field) : undefined
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys) this.issue([...iss.path, key], 'unknown key', origin)
        continue
      }
      let message = iss.message
      if (showsInput(iss.code) && iss.input !== undefined && !field?.secret) {
        message += `, got ${showInput(iss.input)}`
      }
      this.issue(iss.path, message, origin)
    }
  }
}

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i

function scalarFromEnv(kind: 'string' | 'number' | 'boolean', raw: string): unknown {
  if (kind === 'number') {
    const t = raw.trim()
    return NUMBER_RE.test(t) ? Number(t) : raw
  }
  if (kind === 'boolean') {
    const t = raw.trim().toLowerCase()
    if (t === 'true' || t === '1') return true
    if (t === 'false' || t === '0') return false
    return raw
  }
  return raw
}

type EnvValue = { value: unknown } | { unset: true } | { error: string }

/**
 * Turns an environment string into the field's type. A value that does not convert is
 * passed on as a string, so validation reports it like any other wrong value.
 */
function fromEnv(field: ConfigField, raw: string): EnvValue {
  if (raw === '') {
    if (field.nullable) return { value: null }
    if (field.optional) return { unset: true }
    if (field.envKind === 'string' || field.envKind === 'raw') return { value: '' }
    if (field.envKind === 'list') return { value: [] }
    return { unset: true }
  }
  switch (field.envKind) {
    case 'string':
    case 'number':
    case 'boolean':
      return { value: scalarFromEnv(field.envKind, raw) }
    case 'list': {
      const t = raw.trim()
      if (t.startsWith('[')) return parseJson(t)
      const items = t
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
      return { value: items.map((s) => scalarFromEnv(field.listItemKind ?? 'string', s)) }
    }
    case 'json':
      return parseJson(raw)
    default:
      return { value: raw }
  }
}

function parseJson(text: string): EnvValue {
  try {
    return { value: JSON.parse(text) }
  } catch (err) {
    return { error: `expected JSON: ${(err as Error).message}` }
  }
}

function dedupe(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>()
  return issues.filter((i) => {
    const key = `${i.path}\0${i.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

export function loadConfig(
  root: ConfigSection,
  schema: z.ZodObject,
  options: LoadOptions<unknown>,
): unknown {
  const loader = new Loader(root)
  const input = skeletonOf(root)
  if (options.file !== undefined) {
    const value = loader.readFile(options.file)
    if (value) loader.merge(root, value, input, [], { kind: 'file' })
  }
  loader.applyEnv(options.env ?? process.env, input)
  const { overrides } = options
  if (isPlainObject(overrides)) loader.merge(root, overrides, input, [], { kind: 'overrides' })

  const result = schema.safeParse(input, { reportInput: true, error: zodMessage })
  if (!result.success) loader.addZodIssues(result.error.issues)
  if (loader.issues.length > 0) throw new ConfigError(dedupe(loader.issues))
  return result.data
}
