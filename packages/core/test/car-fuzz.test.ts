// Property-based fuzzing (fast-check) of repo CAR import: a real signed repo's CAR (from
// @atproto/repo) truncated, with bytes flipped, overwritten, inserted or removed, or replaced
// by arbitrary bytes, then read with readRepoCar checking DID and signature. It either reads
// exactly the original records or fails with a CarError (a stable code and a message), never
// another exception. (`atcr-hold repo import` with such files, and the repo left unchanged, is
// fuzzed in the hold's repo-import-fuzz test.) The seed is random per run; fast-check prints it.
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { damagedBytesArb } from '@atcr/testkit'
import { Secp256k1Keypair } from '@atproto/crypto'
import { MemoryBlockstore, type RecordCreateOp, Repo, WriteOpAction } from '@atproto/repo'
import fc from 'fast-check'
import { CarError, exportRepoCar, readRepoCar } from '../src/car/index.ts'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'

describe('repo CAR import, fuzzed', () => {
  let key: Secp256k1Keypair
  let car: Uint8Array
  let expected: string
  before(async () => {
    key = await Secp256k1Keypair.create()
    const storage = new MemoryBlockstore()
    const writes: RecordCreateOp[] = []
    for (let i = 0; i < 40; i++) {
      writes.push({
        action: WriteOpAction.Create,
        collection: 'io.atcr.tag',
        rkey: `tag-${i}`,
        record: { $type: 'io.atcr.tag', tag: `v${i}` },
      })
    }
    await Repo.create(storage, DID, key, writes)
    const chunks: Uint8Array[] = []
    for await (const chunk of exportRepoCar(storage)) chunks.push(chunk)
    car = Buffer.concat(chunks)
    expected = await recordsOf(car)
  })

  async function recordsOf(bytes: Uint8Array): Promise<string> {
    const read = await readRepoCar(bytes, { did: DID, signingKey: key.did() })
    return JSON.stringify(read.records.map((r) => [r.collection, r.rkey, r.cid.toString()]))
  }

  it('a damaged CAR reads as the original or fails with a CarError', async () => {
    const codes = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(
        fc.constant(null).chain(() => damagedBytesArb(car)),
        async (damaged) => {
          try {
            assert.equal(await recordsOf(damaged), expected, 'read, so it must be the same repo')
            codes.set('read', (codes.get('read') ?? 0) + 1)
          } catch (error) {
            if (error instanceof assert.AssertionError) throw error
            assert.ok(error instanceof CarError, `not a CarError: ${(error as Error)?.stack}`)
            assert.ok(error.message.length > 0 && error.message.length < 2000)
            codes.set(error.code, (codes.get(error.code) ?? 0) + 1)
          }
        },
      ),
      { numRuns: 5000 },
    )
    assert.ok(codes.size >= 3, JSON.stringify([...codes]))
  })
})
