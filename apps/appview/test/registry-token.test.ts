// The registry token verifier's memory of verified tokens: it answers a token it verified
// before without verifying it again, but never past the token's expiry, and never for a
// token that differs in any byte.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadOrCreateTokenKey } from '@atcr/core/oauth'
import { InvalidRegistryTokenError, RegistryTokens } from '../src/auth/registry-token.ts'

describe('registry tokens, verified once', () => {
  let dir: string
  let clock: number
  let lookups: { hit: number; miss: number }
  let tokens: RegistryTokens
  const access = [{ type: 'repository', name: 'did:plc:alice/app', actions: new Set(['pull']) }]

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-token-'))
    clock = Date.now()
    lookups = { hit: 0, miss: 0 }
    tokens = new RegistryTokens({
      key: await loadOrCreateTokenKey(join(dir, 'token.key')),
      service: 'registry.test',
      lifetime: 300,
      verifiedCounter: { hit: () => lookups.hit++, miss: () => lookups.miss++ },
      now: () => clock,
    })
  })

  after(() => rm(dir, { recursive: true, force: true }))

  it('answers a known token from memory until it expires, then refuses it', async () => {
    const { token } = await tokens.issue('did:plc:alice', access, new Date(clock))
    const first = await tokens.verify(token)
    assert.equal(first.did, 'did:plc:alice')
    assert.deepEqual(lookups, { hit: 0, miss: 1 })
    assert.deepEqual(await tokens.verify(token), first)
    assert.deepEqual(lookups, { hit: 1, miss: 1 })

    // One character changed in the signature: not the remembered token, and refused.
    const last = token.at(-2) === 'A' ? 'B' : 'A'
    const altered = `${token.slice(0, -2)}${last}${token.slice(-1)}`
    await assert.rejects(tokens.verify(altered), InvalidRegistryTokenError)

    clock += 299_000 // within the lifetime: still known
    assert.deepEqual(await tokens.verify(token), first)
    clock += 12_000 // past the expiry and the clock slack
    await assert.rejects(tokens.verify(token), InvalidRegistryTokenError)
    await assert.rejects(tokens.verify(token), InvalidRegistryTokenError, 'forgotten, not revived')
  })

  it('remembers a token only until its own expiry, however late it was first seen', async () => {
    // Issued 200 s ago: 100 s of its lifetime left when first verified.
    const { token } = await tokens.issue('did:plc:alice', access, new Date(clock - 200_000))
    await tokens.verify(token)
    clock += 105_000
    assert.equal((await tokens.verify(token)).did, 'did:plc:alice', 'within the clock slack')
    clock += 10_000
    await assert.rejects(tokens.verify(token), InvalidRegistryTokenError)
  })
})
