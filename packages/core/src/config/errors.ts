import { z } from 'zod/v4'

/** One problem in the configuration, located by its YAML path and where the value came from. */
export interface ConfigIssue {
  /** YAML path such as `storage.s3.bucket` or `quota.tiers[1].limit`; '' for the whole file. */
  readonly path: string
  readonly message: string
  /** The environment variable the value came from. */
  readonly envVar?: string
  /** The file the value came from, and its line when known. */
  readonly file?: string
  readonly line?: number
}

export function formatIssue(issue: ConfigIssue): string {
  const at = issue.file ? `${issue.file}${issue.line ? `:${issue.line}` : ''}` : undefined
  if (!issue.path) return at ? `${at}: ${issue.message}` : issue.message
  const from = issue.envVar ? ` (from ${issue.envVar})` : at ? ` (${at})` : ''
  return `${issue.path}: ${issue.message}${from}`
}

/** The configuration is invalid; `issues` holds every problem found, not only the first. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[]

  constructor(issues: readonly ConfigIssue[]) {
    const lines = issues.map((i) => `  ${formatIssue(i)}`)
    super(`invalid configuration:\n${lines.join('\n')}`)
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** `quota.tiers[1].limit` from ['quota', 'tiers', 1, 'limit']. */
export function displayPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out ? `.${String(seg)}` : String(seg)
  }
  return out
}

const NOUNS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean (true or false)',
  array: 'a list',
  object: 'a mapping',
  record: 'a mapping',
  null: 'null',
}

function showValues(values: readonly unknown[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ')
}

/** Our wording for zod's issues; messages written in the schema itself take precedence. */
export function zodMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required'
      if (issue.inst instanceof z.ZodNumber && issue.inst.isInt) return 'expected an integer'
      return `expected ${NOUNS[issue.expected] ?? issue.expected}`
    case 'too_small': {
      const n = Number(issue.minimum)
      if (issue.origin === 'string') {
        return n === 1 ? 'must not be empty' : `must be at least ${n} characters long`
      }
      if (issue.origin === 'array') return `must have at least ${n} entries`
      return issue.inclusive === false ? `must be greater than ${n}` : `must be at least ${n}`
    }
    case 'too_big': {
      const n = Number(issue.maximum)
      if (issue.origin === 'string') return `must be at most ${n} characters long`
      if (issue.origin === 'array') return `must have at most ${n} entries`
      return issue.inclusive === false ? `must be less than ${n}` : `must be at most ${n}`
    }
    case 'invalid_format':
      if (issue.format === 'url') return 'expected a URL'
      if (issue.format === 'regex' && 'pattern' in issue) return `must match ${issue.pattern}`
      return `expected ${issue.format === 'starts_with' || issue.format === 'ends_with' ? 'a string that ' : ''}${issue.format.replaceAll('_', ' ')}`
    case 'invalid_value':
      return issue.values.length === 1
        ? `expected ${showValues(issue.values)}`
        : `expected one of ${showValues(issue.values)}`
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`
    default:
      return undefined
  }
}

const SHOWS_INPUT = new Set([
  'invalid_type',
  'too_small',
  'too_big',
  'invalid_format',
  'invalid_value',
  'not_multiple_of',
])

export function showsInput(code: string): boolean {
  return SHOWS_INPUT.has(code)
}

/** A short rendering of a bad value for an error message. */
export function showInput(value: unknown): string {
  if (Array.isArray(value)) return 'a list'
  if (value !== null && typeof value === 'object') return 'a mapping'
  // JSON writes Infinity (a YAML number too long for a double) as null.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 60 ? `${text.slice(0, 57)}...` : text
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost)
    }
    prev = cur
  }
  return prev[b.length]!
}

export function unknownKeyMessage(key: string, known: Iterable<string>): string {
  let best: string | undefined
  let bestDistance = Number.POSITIVE_INFINITY
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k)
    if (d < bestDistance) {
      best = k
      bestDistance = d
    }
  }
  const close = best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3))
  return close ? `unknown key (did you mean "${best}"?)` : 'unknown key'
}
