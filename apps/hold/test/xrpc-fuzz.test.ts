// Property-based fuzzing (fast-check) of every io.atcr.hold query and procedure of a real
// hold process: parameters and JSON bodies generated from the method's lexicon schema, then
// mutated (fields replaced, removed, added, wrong types), arbitrary JSON and bodies that are
// not JSON; called by a crew member, the owner, anonymously and with a garbage token. Never a
// 5xx; a refusal is an XRPC error body whose name is generic (InvalidRequest, AuthRequired...)
// or one the method's lexicon declares; a refused call leaves the hold's repo at the same
// commit. The seed is random per run; fast-check prints it (and the shrunk input) on failure.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { lexiconDocuments, NSID } from '@atcr/core/lexicons'
import { type Json, mutatedJson, type TestAccount, weirdJsonValue } from '@atcr/testkit'
import type { LexiconDoc } from '@atproto/lexicon'
import fc from 'fast-check'
import { HoldFixture, type TestHold } from './hold-harness.ts'
import { joinCrew, pdsToken } from './hold-xrpc.ts'

const GENERIC_ERRORS = new Set([
  'InvalidRequest',
  'AuthRequired',
  'AuthMissing',
  'InvalidToken',
  'ExpiredToken',
  'BadJwtSignature',
  'Forbidden',
  'NotFound',
  'PayloadTooLarge',
  'RateLimitExceeded',
  'MethodNotImplemented',
  // Beyond the lexicons, as docs/hold.md says: the upload caps.
  'TooManyUploads',
  'QuotaExceeded',
])
/** Names docs/hold.md gives a method beyond its published lexicon. */
const DOCUMENTED_EXTRA: Record<string, string[]> = {
  'io.atcr.hold.notifyManifest': ['BlobNotFound'],
}
/** Service-auth refusals name their reason (`BadJwtSignature`, `JwtExpired`...). */
const AUTH_ERROR = /^(BadJwt[A-Za-z]*|JwtExpired)$/

type Schema = Record<string, unknown> & { type?: string }
interface Method {
  nsid: string
  type: 'query' | 'procedure'
  doc: LexiconDoc
  params?: Schema
  input?: { encoding: string; schema?: Schema }
  errors: Set<string>
}

const METHODS: Method[] = lexiconDocuments.flatMap((doc) => {
  const main = doc.defs.main as Schema | undefined
  if (!doc.id.startsWith('io.atcr.hold.') || !main) return []
  if (main.type !== 'query' && main.type !== 'procedure') return []
  return [
    {
      nsid: doc.id,
      type: main.type,
      doc,
      ...(main.parameters ? { params: main.parameters as Schema } : {}),
      ...(main.input ? { input: main.input as Method['input'] & object } : {}),
      errors: new Set([
        ...((main.errors as { name: string }[]) ?? []).map((e) => e.name),
        ...(DOCUMENTED_EXTRA[doc.id] ?? []),
      ]),
    },
  ]
})

/** Values that fit a lexicon schema (refs followed within the documents), for one method. */
function fromSchema(
  schema: Schema,
  doc: LexiconDoc,
  names: Record<string, fc.Arbitrary<Json>>,
  depth = 0,
): fc.Arbitrary<Json> {
  switch (schema.type) {
    case 'ref': {
      const ref = schema.ref as string
      const [id, def] = ref.startsWith('#') ? [doc.id, ref.slice(1)] : ref.split('#')
      const target = lexiconDocuments.find((d) => d.id === id)
      const resolved = target?.defs[def ?? 'main'] as Schema | undefined
      return resolved && depth < 6
        ? fromSchema(resolved, target!, names, depth + 1)
        : fc.constant({})
    }
    case 'union':
      return fromSchema({ type: 'ref', ref: (schema.refs as string[])[0] }, doc, names, depth)
    case 'object':
    case 'params': {
      const properties = (schema.properties ?? {}) as Record<string, Schema>
      const required = new Set((schema.required as string[]) ?? [])
      const record: Record<string, fc.Arbitrary<Json>> = {}
      for (const [key, prop] of Object.entries(properties)) {
        record[key] = names[key] ?? fromSchema(prop, doc, names, depth + 1)
      }
      return fc.record(record, {
        requiredKeys: Object.keys(properties).filter((k) => required.has(k)),
      }) as fc.Arbitrary<Json>
    }
    case 'array':
      return fc.array(fromSchema(schema.items as Schema, doc, names, depth + 1), { maxLength: 3 })
    case 'integer':
      return fc.integer({
        min: (schema.minimum as number | undefined) ?? 0,
        max: (schema.maximum as number | undefined) ?? 1_000_000,
      })
    case 'boolean':
      return fc.boolean()
    case 'string': {
      const known = (schema.knownValues ?? schema.enum) as string[] | undefined
      if (known?.length) return fc.constantFrom(...known)
      if (schema.format === 'datetime') return fc.constant(new Date().toISOString())
      if (schema.format === 'did') return names.userDid ?? fc.constant('did:plc:unknown')
      return fc.string({ maxLength: 20 })
    }
    default:
      return fc.constant(null)
  }
}

describe('hold XRPC methods, fuzzed', () => {
  let fixture: HoldFixture
  let hold: TestHold
  let owner: TestAccount
  let alice: TestAccount
  const tokens = new Map<string, { token: string; at: number }>()

  before(async () => {
    fixture = await HoldFixture.start({ accounts: ['fuzz-owner.test', 'alice.test'] })
    ;[owner, alice] = fixture.accounts as [TestAccount, TestAccount]
    hold = await fixture.startHold({
      allowAllCrew: true,
      tiers: [{ name: 'deckhand', limit: 10_000_000, description: '' }],
      defaultTier: 'deckhand',
    })
    await joinCrew(hold, alice)
  })
  after(() => fixture?.close())

  /** A service token from the account's PDS, reused for a while (they last a minute). */
  async function token(account: TestAccount, nsid: string): Promise<string> {
    const key = `${account.did} ${nsid}`
    const cached = tokens.get(key)
    if (cached && Date.now() - cached.at < 20_000) return cached.token
    const fresh = await pdsToken(account, hold.did, nsid)
    tokens.set(key, { token: fresh, at: Date.now() })
    return fresh
  }

  async function latestCommit(): Promise<string> {
    const response = await fetch(
      `${hold.url}/xrpc/com.atproto.sync.getLatestCommit?did=${encodeURIComponent(hold.did)}`,
    )
    assert.equal(response.status, 200)
    return JSON.stringify(await response.json())
  }

  const digest = fc
    .string({
      unit: fc.constantFrom(...'0123456789abcdef'.split('')),
      minLength: 64,
      maxLength: 64,
    })
    .map((h) => `sha256:${h}`)
  // Field names whose valid values the lexicons cannot say: DIDs of real accounts, digests.
  const names = (): Record<string, fc.Arbitrary<Json>> => ({
    userDid: fc.constantFrom(alice.did, owner.did, 'did:plc:unknown'),
    did: fc.constantFrom(alice.did, hold.did),
    member: fc.constantFrom(alice.did, owner.did),
    ownerDid: fc.constantFrom(alice.did, owner.did),
    digest,
    manifestDigest: digest,
    repository: fc.constantFrom('app', 'tools/app', ''),
  })

  const call = () =>
    fc
      .tuple(fc.constantFrom(...METHODS), fc.constantFrom('crew', 'owner', 'anonymous', 'garbage'))
      .chain(([method, who]) => {
        const schema = method.type === 'query' ? method.params : method.input?.schema
        const valid = schema ? fromSchema(schema, method.doc, names()) : fc.constant<Json>({})
        const value = fc.oneof(
          { arbitrary: valid, weight: 2 },
          { arbitrary: mutatedJson(valid, { names: Object.keys(names()) }), weight: 5 },
          { arbitrary: weirdJsonValue, weight: 1 },
        )
        const raw = fc.option(fc.string({ maxLength: 40 }), { freq: 8 })
        return fc.tuple(fc.constant(method), fc.constant(who), value, raw)
      })

  it('any parameters or body, by anyone: never a 5xx, an XRPC error it may answer, and no commit when refused', async () => {
    const seen = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(call(), async ([method, who, value, raw]) => {
        const headers: Record<string, string> = {}
        if (who === 'garbage') headers.authorization = 'Bearer not.a.token'
        else if (who !== 'anonymous') {
          headers.authorization = `Bearer ${await token(who === 'crew' ? alice : owner, method.nsid)}`
        }
        let url = `${hold.url}/xrpc/${method.nsid}`
        const init: RequestInit = { headers }
        if (method.type === 'query') {
          const query = new URLSearchParams()
          if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
            for (const [key, item] of Object.entries(value)) {
              for (const one of Array.isArray(item) ? item : [item]) {
                query.append(key, typeof one === 'string' ? one : JSON.stringify(one))
              }
            }
          }
          url += `?${query}`
        } else if (method.input?.encoding === 'application/json' || !method.input) {
          init.method = 'POST'
          headers['content-type'] = 'application/json'
          init.body = raw ?? JSON.stringify(value)
        } else {
          // uploadPart: raw bytes, with the upload id and part number as headers.
          init.method = 'PUT'
          headers['content-type'] = 'application/octet-stream'
          headers['x-upload-id'] = String(JSON.stringify(value))
            .slice(0, 40)
            .replace(/[^\x20-\x7e]/g, '')
          headers['x-part-number'] = String(raw ?? 1).replace(/[^\x20-\x7e]/g, '')
          init.body = JSON.stringify(value)
        }
        const before = await latestCommit()
        const response = await fetch(url, init)
        const text = await response.text()
        const outcome = `${method.nsid} ${response.status}`
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1)
        assert.ok(response.status < 500, `${outcome}: ${text}`)
        if (response.status >= 400) {
          const body = JSON.parse(text) as { error?: unknown; message?: unknown }
          assert.equal(typeof body.error, 'string', text)
          assert.equal(typeof body.message, 'string', text)
          assert.ok(
            GENERIC_ERRORS.has(body.error as string) ||
              AUTH_ERROR.test(body.error as string) ||
              method.errors.has(body.error as string),
            `${outcome}: ${body.error} is not an error ${method.nsid} declares`,
          )
          assert.equal(await latestCommit(), before, `${outcome} refused, yet committed`)
        }
      }),
      { numRuns: 800 },
    )
    // Every method was reached, and some calls got through.
    for (const method of METHODS) {
      assert.ok(
        [...seen.keys()].some((k) => k.startsWith(`${method.nsid} `)),
        method.nsid,
      )
    }
    assert.ok(
      [...seen.keys()].some((k) => k.endsWith(' 200')),
      JSON.stringify([...seen]),
    )
  })

  it('the com.atproto queries the hold serves, with any parameters: never a 5xx, an XRPC error body', async () => {
    const captain = (await (
      await fetch(
        `${hold.url}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(hold.did)}&collection=${NSID.holdCaptain}&rkey=self`,
      )
    ).json()) as { cid: string }
    const text = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.constantFrom('', ' ', '%', '\u0000', 'x'.repeat(600)),
    )
    const paramArbs: Record<string, fc.Arbitrary<string | string[]>> = {
      did: fc.oneof(fc.constantFrom(hold.did, alice.did, 'did:web:', 'did:plc:'), text),
      repo: fc.oneof(fc.constantFrom(hold.did, alice.did, 'hold.test'), text),
      collection: fc.oneof(fc.constantFrom(NSID.holdCaptain, NSID.holdCrew, 'a.b', 'A..b'), text),
      rkey: fc.oneof(fc.constantFrom('self', '..', '3abc'), text),
      cid: fc.oneof(fc.constant(captain.cid), text),
      cids: fc.array(fc.oneof(fc.constant(captain.cid), text), { maxLength: 3 }),
      limit: fc.oneof(fc.integer({ min: -5, max: 2000 }).map(String), text),
      cursor: text,
      since: text,
      reverse: fc.oneof(fc.constantFrom('true', 'false'), text),
      handle: fc.oneof(fc.constantFrom('hold.test', 'alice.test'), text),
    }
    const methods = [
      'com.atproto.identity.resolveHandle',
      'com.atproto.repo.describeRepo',
      'com.atproto.repo.getRecord',
      'com.atproto.repo.listRecords',
      'com.atproto.server.describeServer',
      'com.atproto.sync.getBlob',
      'com.atproto.sync.getBlocks',
      'com.atproto.sync.getLatestCommit',
      'com.atproto.sync.getRecord',
      'com.atproto.sync.getRepo',
      'com.atproto.sync.getRepoStatus',
      'com.atproto.sync.listBlobs',
      'com.atproto.sync.listRepos',
    ]
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...methods),
        fc.record(paramArbs, { requiredKeys: [] }),
        async (nsid, params) => {
          const query = new URLSearchParams()
          for (const [key, value] of Object.entries(params)) {
            if (value === undefined) continue
            for (const one of Array.isArray(value) ? value : [value]) query.append(key, one)
          }
          const response = await fetch(`${hold.url}/xrpc/${nsid}?${query}`)
          const body = Buffer.from(await response.arrayBuffer())
          assert.ok(response.status < 500, `${nsid} ${response.status}: ${body}`)
          if (response.status >= 400) {
            const error = JSON.parse(body.toString()) as { error?: unknown }
            assert.equal(typeof error.error, 'string', `${nsid}: ${body}`)
          }
        },
      ),
      { numRuns: 600 },
    )
  })

  it('subscribeRepos with any cursor: an error frame and a close, or the stream; the hold serves on', async () => {
    const cursorArb = fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.constantFrom('0', '-1', '1.5', '99999999999999999999', '1e3', ' 1', '9'.repeat(15)),
      fc.nat().map(String),
    )
    await fc.assert(
      fc.asyncProperty(cursorArb, async (cursor) => {
        const url = `${hold.url.replace('http:', 'ws:')}/xrpc/com.atproto.sync.subscribeRepos?cursor=${encodeURIComponent(cursor)}`
        const socket = new WebSocket(url)
        socket.binaryType = 'arraybuffer'
        const valid = /^\d{1,15}$/.test(cursor)
        // An invalid cursor: an error frame, then a close (1008); a valid one: the stream
        // opens (or closes if the cursor is in the future). Events, never a fixed wait.
        const outcome = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no answer to cursor ${cursor}`)), 30_000)
          const settle = (what: string) => {
            clearTimeout(timer)
            resolve(what)
          }
          socket.addEventListener('close', (event) => settle(`closed ${event.code}`))
          socket.addEventListener('error', () => settle('error'))
          if (valid) socket.addEventListener('open', () => settle('open'))
        })
        socket.close()
        if (!valid)
          assert.equal(outcome, 'closed 1008', `cursor ${JSON.stringify(cursor)}: ${outcome}`)
        else assert.ok(outcome === 'open' || outcome.startsWith('closed 1'), outcome)
        const health = await fetch(`${hold.url}/xrpc/_health`)
        assert.equal(health.status, 200)
      }),
      { numRuns: 40 },
    )
  })

  it('the captain record is still the one the hold wrote', async () => {
    const response = await fetch(
      `${hold.url}/xrpc/com.atproto.repo.getRecord?repo=${encodeURIComponent(hold.did)}&collection=${NSID.holdCaptain}&rkey=self`,
    )
    assert.equal(response.status, 200)
    const { value } = (await response.json()) as { value: { owner: string } }
    assert.equal(value.owner, owner.did)
  })
})
