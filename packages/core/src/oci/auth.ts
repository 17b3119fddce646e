// Registry auth on the wire: WWW-Authenticate challenges (RFC 9110 §11) and the token scope
// grammar of the distribution token spec, with repository names that may hold colons
// (`localhost:5000/app`, or `did:plc:abc/app` in ATCR).

export const SCOPE_ACTIONS = ['pull', 'push', 'delete', '*'] as const
export type KnownScopeAction = (typeof SCOPE_ACTIONS)[number]

export interface TokenScope {
  /** Resource type, e.g. `repository` or `registry`. */
  type: string
  /** Resource class, as in `repository(plugin)`. */
  class?: string
  /** Resource name, e.g. `alice/app` or `catalog`; may contain colons. */
  name: string
  actions: ReadonlySet<string>
}

/** A scope string that does not follow `type[(class)]:name:action[,action...]`. */
export class InvalidScopeError extends Error {
  override readonly name: string = 'InvalidScopeError'
  readonly input: string

  constructor(input: string, explanation: string) {
    super(`invalid scope ${JSON.stringify(input.slice(0, 300))}: ${explanation}`)
    this.input = input
  }
}

const RESOURCE_TYPE = /^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$/
const ACTION = /^(?:\*|[a-z][a-z0-9_-]*)$/
// A name must not hold what separates scopes (whitespace) or control characters.
const NAME_FORBIDDEN = /[\s\p{Cc}]/u

/**
 * Parses one resource scope. The type ends at the first colon and the actions start after
 * the last one, so everything in between, colons included, is the name.
 */
export function parseScope(scope: string): TokenScope {
  const first = scope.indexOf(':')
  const last = scope.lastIndexOf(':')
  if (first === -1 || first === last) {
    throw new InvalidScopeError(scope, 'expected <type>:<name>:<actions>')
  }
  const typeMatch = RESOURCE_TYPE.exec(scope.slice(0, first))
  if (!typeMatch) {
    throw new InvalidScopeError(scope, 'the resource type must be [a-z0-9]+, optionally (class)')
  }
  const name = scope.slice(first + 1, last)
  if (name.length === 0) throw new InvalidScopeError(scope, 'the resource name is empty')
  if (NAME_FORBIDDEN.test(name)) {
    throw new InvalidScopeError(
      scope,
      'the resource name contains whitespace or control characters',
    )
  }
  const actions = new Set<string>()
  for (const action of scope.slice(last + 1).split(',')) {
    if (action === '') continue
    if (!ACTION.test(action))
      throw new InvalidScopeError(scope, `invalid action ${JSON.stringify(action)}`)
    actions.add(action)
  }
  const result: TokenScope = { type: typeMatch[1]!, name, actions }
  if (typeMatch[2] !== undefined) result.class = typeMatch[2]
  return result
}

/**
 * Parses the scopes of a token request or challenge: space-separated within one string, and
 * possibly several strings (a token request may repeat its `scope` parameter).
 */
export function parseScopes(input: string | readonly string[] | undefined): TokenScope[] {
  if (input === undefined) return []
  const strings = typeof input === 'string' ? [input] : input
  return strings.flatMap((s) =>
    s
      .split(/\s+/)
      .filter((part) => part !== '')
      .map(parseScope),
  )
}

const ACTION_RANK: Readonly<Record<string, number>> = { pull: 0, push: 1, delete: 2, '*': 4 }

/** Actions in a stable order: pull, push, delete, others alphabetically, then `*`. */
export function sortActions(actions: Iterable<string>): string[] {
  return [...actions].sort((a, b) => {
    const byRank = (ACTION_RANK[a] ?? 3) - (ACTION_RANK[b] ?? 3)
    return byRank !== 0 ? byRank : a < b ? -1 : a > b ? 1 : 0
  })
}

export function formatScope(scope: TokenScope): string {
  const type = scope.class === undefined ? scope.type : `${scope.type}(${scope.class})`
  return `${type}:${scope.name}:${sortActions(scope.actions).join(',')}`
}

export function formatScopes(scopes: readonly TokenScope[]): string {
  return scopes.map(formatScope).join(' ')
}

/** A scope from its parts, e.g. `scopeOf('repository', 'alice/app', ['pull'])`. */
export function scopeOf(type: string, name: string, actions: Iterable<string>): TokenScope {
  return parseScope(`${type}:${name}:${[...actions].join(',')}`)
}

/** `repository:<name>:<actions>` */
export function repositoryScope(name: string, actions: Iterable<string>): TokenScope {
  return scopeOf('repository', name, actions)
}

/** `registry:catalog:*`, the scope of the catalog endpoint. */
export const CATALOG_SCOPE: TokenScope = Object.freeze({
  type: 'registry',
  name: 'catalog',
  actions: new Set(['*']) as ReadonlySet<string>,
})

function resourceKey(scope: { type: string; name: string }): string {
  return `${scope.type} ${scope.name}`
}

/**
 * One scope per resource, actions united. The class is not part of the resource: scopes
 * that differ only in class merge, keeping the first one's class.
 */
export function mergeScopes(scopes: readonly TokenScope[]): TokenScope[] {
  const merged = new Map<string, TokenScope & { actions: Set<string> }>()
  for (const scope of scopes) {
    const key = resourceKey(scope)
    const existing = merged.get(key)
    if (existing) {
      for (const action of scope.actions) existing.actions.add(action)
    } else {
      merged.set(key, { ...scope, actions: new Set(scope.actions) })
    }
  }
  return [...merged.values()]
}

/**
 * What of `requested` is covered by `granted`: per requested resource, the requested actions
 * that were granted. A granted `*` covers every action; a requested `*` not granted as such
 * yields what was granted. Resources left with no action are dropped.
 */
export function intersectScopes(
  granted: readonly TokenScope[],
  requested: readonly TokenScope[],
): TokenScope[] {
  const grantedByResource = new Map(mergeScopes(granted).map((s) => [resourceKey(s), s.actions]))
  const result: TokenScope[] = []
  for (const want of mergeScopes(requested)) {
    const have = grantedByResource.get(resourceKey(want))
    if (have === undefined) continue
    let actions: Set<string>
    if (have.has('*')) actions = new Set(want.actions)
    else if (want.actions.has('*')) actions = new Set(have)
    else actions = new Set([...want.actions].filter((a) => have.has(a)))
    if (actions.size > 0) result.push({ ...want, actions })
  }
  return result
}

/** True when `granted` allows `action` on the resource (`*` allows every action). */
export function scopeAllows(
  granted: readonly TokenScope[],
  resource: { type: string; name: string },
  action: string,
): boolean {
  return granted.some(
    (s) =>
      s.type === resource.type &&
      s.name === resource.name &&
      (s.actions.has(action) || s.actions.has('*')),
  )
}

/** One entry of the `access` claim of a registry token (distribution token spec). */
export interface AccessEntry {
  type: string
  class?: string
  name: string
  actions: string[]
}

export function toAccessEntries(scopes: readonly TokenScope[]): AccessEntry[] {
  return scopes.map((s) => {
    const entry: AccessEntry = { type: s.type, name: s.name, actions: sortActions(s.actions) }
    if (s.class !== undefined) entry.class = s.class
    return entry
  })
}

/** A claim value for an error message; String() throws on objects like `{"toString":""}`. */
function describeClaim(value: unknown): string {
  return JSON.stringify(value) ?? typeof value
}

/** Reads an `access` claim back into scopes; throws InvalidScopeError on a malformed one. */
export function fromAccessEntries(access: unknown): TokenScope[] {
  if (access === undefined || access === null) return []
  if (!Array.isArray(access)) {
    throw new InvalidScopeError(describeClaim(access), 'access must be a list')
  }
  return access.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null) {
      throw new InvalidScopeError(describeClaim(entry), 'access entry must be an object')
    }
    const { type, class: cls, name, actions } = entry as Record<string, unknown>
    if (
      typeof type !== 'string' ||
      typeof name !== 'string' ||
      (cls !== undefined && typeof cls !== 'string') ||
      !Array.isArray(actions) ||
      !actions.every((a) => typeof a === 'string' && !a.includes(','))
    ) {
      throw new InvalidScopeError(JSON.stringify(entry), 'malformed access entry')
    }
    const resourceType = cls === undefined ? type : `${type}(${cls})`
    return parseScope(`${resourceType}:${name}:${actions.join(',')}`)
  })
}

// --- WWW-Authenticate challenges

export interface AuthChallenge {
  /** The scheme as sent; compare it case-insensitively. */
  scheme: string
  /** Parameters by lower-cased name, unquoted; the first of duplicates wins. */
  params: Record<string, string>
  /** The token68 form some schemes use instead of parameters. */
  token68?: string
}

export interface BearerChallenge {
  realm: string
  service?: string
  /** Space-separated scopes; read them with parseScopes(). */
  scope?: string
  /** RFC 6750 error code, e.g. `invalid_token` or `insufficient_scope`. */
  error?: string
  errorDescription?: string
}

export interface BearerChallengeInit extends Omit<BearerChallenge, 'scope'> {
  scope?: string | readonly TokenScope[]
}

function quote(value: string): string {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if ((code < 0x20 && code !== 0x09) || code === 0x7f) {
      throw new TypeError('a challenge parameter cannot contain control characters')
    }
  }
  return `"${value.replace(/["\\]/g, '\\$&')}"`
}

function buildChallenge(
  scheme: string,
  params: ReadonlyArray<[string, string | undefined]>,
): string {
  const rendered = params
    .filter((p): p is [string, string] => p[1] !== undefined)
    .map(([name, value]) => `${name}=${quote(value)}`)
  return `${scheme} ${rendered.join(',')}`
}

/** `Bearer realm="…",service="…",scope="…"[,error="…"][,error_description="…"]` */
export function buildBearerChallenge(challenge: BearerChallengeInit): string {
  const scope =
    typeof challenge.scope === 'string' || challenge.scope === undefined
      ? challenge.scope
      : formatScopes(challenge.scope)
  return buildChallenge('Bearer', [
    ['realm', challenge.realm],
    ['service', challenge.service],
    ['scope', scope === '' ? undefined : scope],
    ['error', challenge.error],
    ['error_description', challenge.errorDescription],
  ])
}

/** `Basic realm="…",charset="UTF-8"` (RFC 7617). */
export function buildBasicChallenge(realm: string): string {
  return buildChallenge('Basic', [
    ['realm', realm],
    ['charset', 'UTF-8'],
  ])
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))/

/**
 * Parses a WWW-Authenticate value into its challenges. Lenient where servers are sloppy:
 * spaces around `=` and commas, unquoted values up to the next comma or space, an
 * unterminated quoted string. Never throws.
 */
export function parseAuthChallenges(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = []
  const length = header.length
  let i = 0
  const isSpace = (c: string | undefined) => c === ' ' || c === '\t'
  const skipSpace = () => {
    while (isSpace(header[i])) i++
  }
  const skipSeparators = () => {
    while (isSpace(header[i]) || header[i] === ',') i++
  }
  const readToken = () => {
    const start = i
    while (i < length && TCHAR.test(header[i]!)) i++
    return header.slice(start, i)
  }
  const readQuoted = () => {
    let value = ''
    i++
    while (i < length) {
      const c = header[i]!
      if (c === '"') {
        i++
        break
      }
      if (c === '\\' && i + 1 < length) {
        value += header[i + 1]
        i += 2
      } else {
        value += c
        i++
      }
    }
    return value
  }
  const readBare = () => {
    const start = i
    while (i < length && header[i] !== ',' && !isSpace(header[i])) i++
    return header.slice(start, i)
  }

  skipSeparators()
  while (i < length) {
    const scheme = readToken()
    if (scheme === '') {
      i++
      skipSeparators()
      continue
    }
    const challenge: AuthChallenge = { scheme, params: {} }
    challenges.push(challenge)
    if (isSpace(header[i])) {
      skipSpace()
      const token68 = TOKEN68.exec(header.slice(i))
      if (token68) {
        challenge.token68 = token68[0]
        i += token68[0].length
      }
    }
    while (true) {
      skipSeparators()
      if (i >= length) break
      const start = i
      const name = readToken()
      if (name === '') {
        i++
        continue
      }
      skipSpace()
      if (header[i] !== '=') {
        i = start
        break
      }
      i++
      skipSpace()
      const value = header[i] === '"' ? readQuoted() : readBare()
      const key = name.toLowerCase()
      // defineProperty, so that a parameter named __proto__ stays a plain parameter.
      if (!Object.hasOwn(challenge.params, key)) {
        Object.defineProperty(challenge.params, key, {
          value,
          enumerable: true,
          writable: true,
          configurable: true,
        })
      }
    }
  }
  return challenges
}

/** The first Bearer challenge with a realm in a WWW-Authenticate value, if any. */
export function parseBearerChallenge(header: string): BearerChallenge | undefined {
  for (const { scheme, params } of parseAuthChallenges(header)) {
    if (scheme.toLowerCase() !== 'bearer' || params.realm === undefined) continue
    const challenge: BearerChallenge = { realm: params.realm }
    if (params.service !== undefined) challenge.service = params.service
    if (params.scope !== undefined) challenge.scope = params.scope
    if (params.error !== undefined) challenge.error = params.error
    if (params.error_description !== undefined) {
      challenge.errorDescription = params.error_description
    }
    return challenge
  }
  return undefined
}
