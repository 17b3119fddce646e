import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  buildBasicChallenge,
  buildBearerChallenge,
  CATALOG_SCOPE,
  formatScope,
  formatScopes,
  fromAccessEntries,
  InvalidScopeError,
  intersectScopes,
  mergeScopes,
  parseAuthChallenges,
  parseBearerChallenge,
  parseScope,
  parseScopes,
  repositoryScope,
  scopeAllows,
  type TokenScope,
  toAccessEntries,
} from '@atcr/core/oci'

function plain(scope: TokenScope) {
  return { ...scope, actions: [...scope.actions].sort() }
}

describe('Bearer challenges', () => {
  test('round trip with a DID-shaped repository scope', () => {
    const scopes = [
      repositoryScope('did:plc:ewvi7nxzyoun6zhxrhs64oiz/app', ['pull', 'push']),
      repositoryScope('alice.bsky.social/base', ['pull']),
    ]
    const header = buildBearerChallenge({
      realm: 'https://atcr.example/auth/token',
      service: 'atcr.example',
      scope: scopes,
      error: 'insufficient_scope',
    })
    assert.equal(
      header,
      'Bearer realm="https://atcr.example/auth/token",service="atcr.example",' +
        'scope="repository:did:plc:ewvi7nxzyoun6zhxrhs64oiz/app:pull,push ' +
        'repository:alice.bsky.social/base:pull",error="insufficient_scope"',
    )
    const parsed = parseBearerChallenge(header)
    assert.deepEqual(parsed, {
      realm: 'https://atcr.example/auth/token',
      service: 'atcr.example',
      scope:
        'repository:did:plc:ewvi7nxzyoun6zhxrhs64oiz/app:pull,push repository:alice.bsky.social/base:pull',
      error: 'insufficient_scope',
    })
    const back = parseScopes(parsed.scope)
    assert.deepEqual(back.map(plain), scopes.map(plain))
    assert.equal(back[0]!.name, 'did:plc:ewvi7nxzyoun6zhxrhs64oiz/app')
  })

  test('quotes and backslashes in values survive the round trip', () => {
    const realm = 'https://x.example/token?a="b"&c=\\d'
    const header = buildBearerChallenge({ realm, errorDescription: 'say "hi", then \\ leave' })
    assert.deepEqual(parseBearerChallenge(header), {
      realm,
      errorDescription: 'say "hi", then \\ leave',
    })
  })

  test('omits what is not given', () => {
    assert.equal(buildBearerChallenge({ realm: 'r' }), 'Bearer realm="r"')
    assert.equal(buildBearerChallenge({ realm: 'r', scope: [] }), 'Bearer realm="r"')
  })

  test('refuses values that would split the header', () => {
    assert.throws(() => buildBearerChallenge({ realm: 'https://x\r\nSet-Cookie: a=b' }), TypeError)
  })

  test('parses the loosely spaced challenges servers send', () => {
    const header =
      'bearer   realm = "https://auth.example/token" ,  service=registry.example ,' +
      'scope="repository:samalba/my-app:pull,push"'
    assert.deepEqual(parseBearerChallenge(header), {
      realm: 'https://auth.example/token',
      service: 'registry.example',
      scope: 'repository:samalba/my-app:pull,push',
    })
  })

  test('finds the Bearer challenge among several', () => {
    const header =
      'Basic realm="basic, with a comma", Bearer realm="https://a.example/token",service="a", ' +
      'Negotiate'
    const challenges = parseAuthChallenges(header)
    assert.deepEqual(
      challenges.map((c) => c.scheme),
      ['Basic', 'Bearer', 'Negotiate'],
    )
    assert.equal(challenges[0]!.params.realm, 'basic, with a comma')
    assert.deepEqual(parseBearerChallenge(header), {
      realm: 'https://a.example/token',
      service: 'a',
    })
  })

  test('reads a token68 challenge and parameter names case-insensitively', () => {
    const [first, second] = parseAuthChallenges('Negotiate abc/+def==, Bearer REALM="r"')
    assert.equal(first!.token68, 'abc/+def==')
    assert.deepEqual(second, { scheme: 'Bearer', params: { realm: 'r' } })
  })

  test('keeps the first of duplicate parameters and keeps __proto__ a plain parameter', () => {
    const [challenge] = parseAuthChallenges('Bearer realm="a",realm="b",__proto__="x"')
    assert.equal(challenge!.params.realm, 'a')
    assert.equal(Object.getPrototypeOf(challenge!.params), Object.prototype)
    assert.equal(Object.getOwnPropertyDescriptor(challenge!.params, '__proto__')?.value, 'x')
  })

  test('answers undefined when there is no usable Bearer challenge', () => {
    assert.equal(parseBearerChallenge(''), undefined)
    assert.equal(parseBearerChallenge('Basic realm="x"'), undefined)
    assert.equal(parseBearerChallenge('Bearer service="no realm"'), undefined)
  })

  test('reads an unterminated quoted value to the end rather than failing', () => {
    assert.deepEqual(parseBearerChallenge('Bearer realm="https://a.example/tok'), {
      realm: 'https://a.example/tok',
    })
  })

  test('Basic challenge', () => {
    const header = buildBasicChallenge('ATCR hold "admin"')
    assert.equal(header, 'Basic realm="ATCR hold \\"admin\\"",charset="UTF-8"')
    assert.deepEqual(parseAuthChallenges(header), [
      { scheme: 'Basic', params: { realm: 'ATCR hold "admin"', charset: 'UTF-8' } },
    ])
  })
})

describe('token scopes', () => {
  test('the name keeps its colons: type to the first colon, actions after the last', () => {
    assert.deepEqual(plain(parseScope('repository:did:plc:abc/app:pull,push')), {
      type: 'repository',
      name: 'did:plc:abc/app',
      actions: ['pull', 'push'],
    })
    assert.deepEqual(plain(parseScope('repository:localhost:5000/foo/bar:pull')), {
      type: 'repository',
      name: 'localhost:5000/foo/bar',
      actions: ['pull'],
    })
  })

  test('a resource class', () => {
    assert.deepEqual(plain(parseScope('repository(plugin):vieux/sshfs:pull')), {
      type: 'repository',
      class: 'plugin',
      name: 'vieux/sshfs',
      actions: ['pull'],
    })
    assert.equal(
      formatScope(parseScope('repository(plugin):vieux/sshfs:pull')),
      'repository(plugin):vieux/sshfs:pull',
    )
  })

  test('the catalog scope', () => {
    const scope = parseScope('registry:catalog:*')
    assert.deepEqual(plain(scope), { type: 'registry', name: 'catalog', actions: ['*'] })
    assert.equal(formatScope(CATALOG_SCOPE), 'registry:catalog:*')
  })

  test('actions are a set, formatted in a stable order', () => {
    const scope = parseScope('repository:a/b:delete,push,pull,push,,')
    assert.equal(scope.actions.size, 3)
    assert.equal(formatScope(scope), 'repository:a/b:pull,push,delete')
    assert.equal(parseScope('repository:a/b:').actions.size, 0)
  })

  test('several scopes, space-separated and repeated', () => {
    const scopes = parseScopes([
      '  repository:did:plc:abc/app:pull   registry:catalog:*',
      'repository:alice/base:pull',
    ])
    assert.equal(
      formatScopes(scopes),
      'repository:did:plc:abc/app:pull registry:catalog:* repository:alice/base:pull',
    )
    assert.deepEqual(parseScopes(undefined), [])
    assert.deepEqual(parseScopes(''), [])
  })

  const invalid: Array<[string, string]> = [
    ['no colon', 'repository'],
    ['one colon', 'repository:alice/app'],
    ['an empty name', 'repository::pull'],
    ['an uppercase type', 'Repository:a:pull'],
    ['an unclosed class', 'repository(plugin:a:pull'],
    ['an uppercase action', 'repository:a:PULL'],
    ['an action with a space', 'repository:a:pull, push'],
    ['a control character in the name', 'repository:a\u0000b:pull'],
  ]
  for (const [what, input] of invalid) {
    test(`rejects ${what}`, () => {
      assert.throws(() => parseScope(input), InvalidScopeError)
    })
  }

  test('merging unites actions per resource', () => {
    const merged = mergeScopes(
      parseScopes(
        'repository:a:pull repository:b:pull repository:a:push repository(plugin):a:delete',
      ),
    )
    assert.equal(formatScopes(merged), 'repository:a:pull,push,delete repository:b:pull')
  })

  test('intersection keeps what was both requested and granted', () => {
    const granted = parseScopes(
      'repository:did:plc:abc/app:pull,push repository:alice/base:pull repository:mine:*',
    )
    const requested = parseScopes(
      'repository:did:plc:abc/app:pull,push,delete repository:alice/base:push ' +
        'repository:mine:pull,delete repository:other:pull',
    )
    assert.equal(
      formatScopes(intersectScopes(granted, requested)),
      'repository:did:plc:abc/app:pull,push repository:mine:pull,delete',
    )
  })

  test('a requested * gets what was granted, a granted * covers a requested *', () => {
    assert.equal(
      formatScopes(intersectScopes(parseScopes('registry:catalog:*'), [CATALOG_SCOPE])),
      'registry:catalog:*',
    )
    assert.equal(
      formatScopes(
        intersectScopes(parseScopes('repository:a:pull'), parseScopes('repository:a:*')),
      ),
      'repository:a:pull',
    )
    assert.deepEqual(intersectScopes([], [CATALOG_SCOPE]), [])
  })

  test('scopeAllows checks one action on one resource', () => {
    const granted = parseScopes('repository:did:plc:abc/app:pull repository:mine:*')
    const app = { type: 'repository', name: 'did:plc:abc/app' }
    assert.equal(scopeAllows(granted, app, 'pull'), true)
    assert.equal(scopeAllows(granted, app, 'push'), false)
    assert.equal(scopeAllows(granted, { type: 'repository', name: 'mine' }, 'delete'), true)
    assert.equal(scopeAllows(granted, { type: 'registry', name: 'mine' }, 'pull'), false)
    assert.equal(scopeAllows(granted, { type: 'repository', name: 'did:plc:abc' }, 'pull'), false)
  })

  test('access claim entries round trip', () => {
    const scopes = parseScopes('repository:did:plc:abc/app:push,pull repository(plugin):p:pull')
    const access = toAccessEntries(scopes)
    assert.deepEqual(access, [
      { type: 'repository', name: 'did:plc:abc/app', actions: ['pull', 'push'] },
      { type: 'repository', class: 'plugin', name: 'p', actions: ['pull'] },
    ])
    assert.deepEqual(
      fromAccessEntries(JSON.parse(JSON.stringify(access))).map(plain),
      scopes.map(plain),
    )
    assert.deepEqual(fromAccessEntries(undefined), [])
    assert.throws(
      () => fromAccessEntries([{ type: 'repository', name: 'a', actions: 'pull' }]),
      InvalidScopeError,
    )
    assert.throws(() => fromAccessEntries({}), InvalidScopeError)
  })
})
