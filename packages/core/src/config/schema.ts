import { z } from 'zod/v4'
import { LOG_LEVELS } from '../log/index.ts'
import { showInput } from './errors.ts'

/** How a field's environment variable is turned into a value before validation. */
export type EnvKind = 'string' | 'number' | 'boolean' | 'list' | 'json' | 'raw'

/** One leaf of the config (a key with a value), as found by walking the schema. */
export interface ConfigField {
  readonly type: 'field'
  readonly key: string
  readonly path: readonly string[]
  readonly envVar: string
  readonly description: string | undefined
  readonly examples: readonly unknown[]
  readonly secret: boolean
  /** Seconds, written in YAML as `90s`, `5m`, `1h`, `1d`. */
  readonly duration: boolean
  /** The value used when no layer sets the key (undefined for optional fields). */
  readonly default: unknown
  readonly optional: boolean
  readonly nullable: boolean
  readonly envKind: EnvKind
  readonly listItemKind: 'string' | 'number' | 'boolean' | undefined
  readonly enumValues: readonly unknown[] | undefined
  readonly min: number | undefined
  readonly max: number | undefined
  readonly integer: boolean
  /** For lists of small objects: the fields of one entry. */
  readonly itemFields: readonly ItemField[] | undefined
  /** Whether unknown keys inside list entries must be reported by the loader. */
  readonly checkItemKeys: boolean
  readonly schema: z.ZodType
}

export interface ItemField {
  readonly key: string
  readonly description: string | undefined
}

export interface ConfigSection {
  readonly type: 'section'
  readonly key: string
  readonly path: readonly string[]
  readonly description: string | undefined
  readonly children: readonly ConfigNode[]
  readonly byKey: ReadonlyMap<string, ConfigNode>
}

export type ConfigNode = ConfigSection | ConfigField

/** Extra metadata our walker reads from `.meta()`, next to zod's `description` and `examples`. */
export interface ConfigMeta {
  description?: string
  examples?: unknown[]
  secret?: boolean
  duration?: boolean
}

const KEY_RE = /^[a-z][a-z0-9_]*$/
export const ENV_PREFIX_RE = /^[A-Z](?:[A-Z0-9_]*[A-Z0-9])?$/

export function envVarName(prefix: string, path: readonly string[]): string {
  return [prefix, ...path].join('_').toUpperCase()
}

/** Wrappers that do not change what a key holds, only whether or how it may be absent. */
function innerOf(s: z.ZodType): z.ZodType | undefined {
  if (
    s instanceof z.ZodDefault ||
    s instanceof z.ZodPrefault ||
    s instanceof z.ZodOptional ||
    s instanceof z.ZodNullable ||
    s instanceof z.ZodNonOptional ||
    s instanceof z.ZodReadonly ||
    s instanceof z.ZodCatch
  ) {
    return s.def.innerType as z.ZodType
  }
  // A pipe (transform) is read and written in the shape of its input.
  if (s instanceof z.ZodPipe) return s.in as z.ZodType
  return undefined
}

/** Peels the wrappers off a schema; metadata found on outer wrappers wins over inner ones. */
function unwrap(s: z.ZodType): { base: z.ZodType; meta: ConfigMeta } {
  const metas: ConfigMeta[] = []
  let cur: z.ZodType | undefined = s
  let base = s
  while (cur) {
    const m = cur.meta()
    if (m) metas.push(m as ConfigMeta)
    base = cur
    cur = innerOf(cur)
  }
  return { base, meta: Object.assign({}, ...metas.reverse()) as ConfigMeta }
}

type Scalar = 'string' | 'number' | 'boolean'

function scalarKind(base: z.ZodType): Scalar | undefined {
  switch (base.def.type) {
    case 'string':
    case 'enum':
      return base instanceof z.ZodEnum &&
        Object.values(base.enum).some((v) => typeof v !== 'string')
        ? undefined
        : 'string'
    case 'number':
      return 'number'
    case 'boolean':
      return 'boolean'
    case 'literal': {
      const values = [...(base as z.ZodLiteral).values]
      const kinds = new Set(values.map((v) => typeof v))
      if (kinds.size !== 1) return undefined
      const [k] = kinds
      return k === 'string' || k === 'number' || k === 'boolean' ? k : undefined
    }
    case 'union': {
      const kinds = new Set(
        (base as z.ZodUnion).options.map((o) => scalarKind(unwrap(o as z.ZodType).base)),
      )
      if (kinds.size !== 1) return undefined
      const [k] = kinds
      return k
    }
    default:
      return undefined
  }
}

function enumValuesOf(base: z.ZodType): unknown[] | undefined {
  if (base instanceof z.ZodEnum) return [...base.options]
  if (base instanceof z.ZodLiteral) return [...base.values]
  return undefined
}

function buildField(prefix: string, path: string[], schema: z.ZodType): ConfigField {
  const where = path.join('.')
  const { base, meta } = unwrap(schema)
  const dflt = schema.safeParse(undefined)
  if (!dflt.success) {
    throw new TypeError(
      `config schema: ${where} has no default; give it .default(...), .optional(), or .nullable().default(null)`,
    )
  }
  const secret = meta.secret === true
  if (secret && dflt.data !== undefined && dflt.data !== null && dflt.data !== '') {
    throw new TypeError(`config schema: ${where} is a secret and must not have a default value`)
  }

  let envKind: EnvKind
  let listItemKind: Scalar | undefined
  let itemFields: ItemField[] | undefined
  let checkItemKeys = false
  const scalar = scalarKind(base)
  if (scalar) {
    envKind = scalar
  } else if (base instanceof z.ZodArray) {
    const { base: element } = unwrap(base.element as z.ZodType)
    listItemKind = scalarKind(element)
    envKind = listItemKind ? 'list' : 'json'
    if (element instanceof z.ZodObject) {
      itemFields = Object.entries(element.shape as Record<string, z.ZodType>).map(([key, s]) => ({
        key,
        description: unwrap(s).meta.description,
      }))
      // Plain z.object() would drop unknown keys silently; strict and loose objects decide themselves.
      checkItemKeys = element.def.catchall === undefined
    }
  } else if (base instanceof z.ZodObject) {
    throw new TypeError(
      `config schema: ${where} is a wrapped object; declare sections as a plain z.object() and put defaults on their fields`,
    )
  } else if (base.def.type === 'record' || base.def.type === 'tuple') {
    envKind = 'json'
  } else {
    envKind = 'raw'
  }

  if (!meta.description) {
    throw new TypeError(`config schema: ${where} has no description; add .describe('...')`)
  }

  let min: number | undefined
  let max: number | undefined
  let integer = false
  if (base instanceof z.ZodNumber) {
    integer = base.isInt
    const lo = base.minValue
    const hi = base.maxValue
    if (lo !== null && Number.isFinite(lo) && lo !== Number.MIN_SAFE_INTEGER) min = lo
    if (hi !== null && Number.isFinite(hi) && hi !== Number.MAX_SAFE_INTEGER) max = hi
  }

  return {
    type: 'field',
    key: path[path.length - 1]!,
    path,
    envVar: envVarName(prefix, path),
    description: meta.description,
    examples: Array.isArray(meta.examples) ? meta.examples : [],
    secret,
    duration: meta.duration === true,
    default: dflt.data,
    optional: dflt.data === undefined,
    nullable: schema.safeParse(null).success,
    envKind,
    listItemKind,
    enumValues: enumValuesOf(base),
    min,
    max,
    integer,
    itemFields,
    checkItemKeys,
    schema,
  }
}

export function buildSection(
  prefix: string,
  path: string[],
  schema: z.ZodObject,
  description: string | undefined,
): ConfigSection {
  const children: ConfigNode[] = []
  for (const [key, child] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    const childPath = [...path, key]
    if (!KEY_RE.test(key)) {
      throw new TypeError(
        `config schema: key ${childPath.join('.')} must be snake_case (lowercase letters, digits, _)`,
      )
    }
    if (child instanceof z.ZodObject) {
      const { description } = unwrap(child).meta
      const section = buildSection(prefix, childPath, child, description)
      if (!description) {
        throw new TypeError(
          `config schema: section ${childPath.join('.')} has no description; add .describe('...')`,
        )
      }
      children.push(section)
    } else {
      children.push(buildField(prefix, childPath, child))
    }
  }
  return {
    type: 'section',
    key: path[path.length - 1] ?? '',
    path,
    description,
    children,
    byKey: new Map(children.map((c) => [c.key, c])),
  }
}

export function fieldsOf(section: ConfigSection): ConfigField[] {
  return section.children.flatMap((c) => (c.type === 'section' ? fieldsOf(c) : [c]))
}

/** An empty object for every section, so zod applies each field's own default. */
export function skeletonOf(section: ConfigSection): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const c of section.children) if (c.type === 'section') out[c.key] = skeletonOf(c)
  return out
}

const DURATION_RE = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/
const DURATION_MESSAGE =
  'expected a duration such as 30s, 5m, 1h, 1d, 1h30m, or a number of seconds'

/** Parses `90`, `90s`, `5m`, `1h30m`, `2d` into seconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim()
  if (/^\d+$/.test(t)) return Number(t)
  const m = DURATION_RE.exec(t)
  if (!t || !m) return undefined
  const [, d, h, mi, s] = m
  return Number(d ?? 0) * 86400 + Number(h ?? 0) * 3600 + Number(mi ?? 0) * 60 + Number(s ?? 0)
}

/** Writes seconds in the largest unit that divides them: 3600 → `1h`, 90 → `90s`. */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds > 0 && seconds % size === 0) return `${seconds / size}${unit}`
  }
  return `${seconds}s`
}

/**
 * A length of time, given as a number of seconds or as `30s`, `5m`, `1h`, `1d`, `1h30m`.
 * The loaded value is always a number of seconds.
 */
export function duration() {
  return z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const seconds = typeof v === 'number' ? v : parseDuration(v)
      if (seconds === undefined || !Number.isSafeInteger(seconds) || seconds < 0) {
        ctx.issues.push({
          code: 'custom',
          message: `${DURATION_MESSAGE}, got ${showInput(v)}`,
          input: v,
        })
        return z.NEVER
      }
      return seconds
    })
    .meta({ duration: true })
}

/** Marks a field as a secret: never given a default, never echoed in errors or logs. */
export function secret<T extends z.ZodType>(schema: T): T {
  return schema.meta({ secret: true })
}

/** An http: or https: URL. */
export function httpUrl() {
  return z.url({ protocol: /^https?$/, error: 'expected an http or https URL' })
}

/** A did:plc or did:web (or another method's) DID, as config values name holds and owners. */
export function did() {
  return z.string().regex(/^did:[a-z]+:[a-zA-Z0-9._:%-]+$/, 'expected a DID')
}

/** The `metrics` section of every service: a Prometheus listener apart from the public one. */
export function metricsSection() {
  return z
    .object({
      port: z
        .number()
        .int()
        .min(0)
        .max(65535)
        .nullable()
        .default(null)
        .describe(
          'Port of the Prometheus listener (GET /metrics), apart from the public one; null: no metrics listener.',
        ),
      host: z
        .string()
        .default('127.0.0.1')
        .describe('Address the metrics listener binds (keep it private).'),
    })
    .describe('Prometheus metrics.')
}

/** The `log` section of every service. */
export function logSection() {
  return z
    .object({ level: z.enum(LOG_LEVELS).default('info').describe('Log level.') })
    .describe('Logging.')
}

/** `server.trust_proxy` of every service. */
export function trustProxyField() {
  return z
    .array(z.string().min(1))
    .default([])
    .describe(
      'Addresses or CIDR ranges of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (client addresses, and the rate limits keyed on them); empty: none, the connecting address is the client.',
    )
    .meta({ examples: [['127.0.0.1', '10.0.0.0/8']] })
}

/** `server.shutdown_grace` of every service. */
export function shutdownGraceField() {
  return duration()
    .default(10)
    .describe(
      'On SIGTERM or SIGINT, new connections are refused and requests in flight get this long to finish before their connections are cut.',
    )
}
