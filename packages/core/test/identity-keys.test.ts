import assert from 'node:assert/strict'
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  KeyFileError,
  KeyFilePermissionsError,
  loadKeypair,
  loadOrCreateKeypair,
  loadRotationKey,
} from '@atcr/core/identity'
import { DidFileError, loadOrCreateDid } from '@atcr/core/identity/plc'
import { verifySignature } from '@atproto/crypto'

describe('key files', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-keys-'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('creates a K256 key once, mode 0600, and loads the same key afterwards', async () => {
    const path = join(dir, 'nested', 'signing.key')
    const created = await loadOrCreateKeypair(path)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.match(await readFile(path, 'utf8'), /^[0-9a-f]{64}\n$/)
    assert.match(created.did(), /^did:key:zQ3s/, 'a secp256k1 did:key')

    const again = await loadOrCreateKeypair(path)
    assert.equal(again.did(), created.did())
    const loaded = await loadKeypair(path)
    assert.equal(loaded.did(), created.did())

    // The loaded key really is the private half: it signs what the public key verifies.
    const message = new TextEncoder().encode('atcr')
    assert.ok(await verifySignature(created.did(), message, await loaded.sign(message)))
  })

  it('two concurrent first starts end up with one key', async () => {
    const path = join(dir, 'race.key')
    const [a, b] = await Promise.all([loadOrCreateKeypair(path), loadOrCreateKeypair(path)])
    assert.equal(a.did(), b.did())
  })

  it('refuses a key file other users can read, and a file that is not a key', async () => {
    const path = join(dir, 'open.key')
    await loadOrCreateKeypair(path)
    await chmod(path, 0o644)
    await assert.rejects(loadKeypair(path), KeyFilePermissionsError)
    await assert.rejects(loadOrCreateKeypair(path), KeyFilePermissionsError)
    assert.ok(await loadKeypair(path, { checkPermissions: false }))

    const garbage = join(dir, 'garbage.key')
    await writeFile(garbage, 'not a key\n', { mode: 0o600 })
    await assert.rejects(loadKeypair(garbage), KeyFileError)
  })

  it('loads a rotation key that exists, and never invents one', async () => {
    const path = join(dir, 'rotation.key')
    await assert.rejects(loadRotationKey(path), KeyFileError)
    const created = await loadOrCreateKeypair(path)
    assert.equal((await loadRotationKey(path)).did(), created.did())
  })
})

describe('loadOrCreateDid', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atcr-did-'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  const CONFIG_DID = 'did:plc:configconfigconfigconfig'
  const FILE_DID = 'did:plc:filefilefilefilefilefile'
  const NEW_DID = 'did:plc:newnewnewnewnewnewnewnew'

  it('creates a DID when there is neither config nor did.txt, and remembers it', async () => {
    const didFile = join(dir, 'first', 'did.txt')
    let creations = 0
    const create = async () => {
      creations++
      return NEW_DID
    }
    assert.deepEqual(await loadOrCreateDid({ didFile, create }), {
      did: NEW_DID,
      source: 'created',
    })
    assert.equal((await readFile(didFile, 'utf8')).trim(), NEW_DID)
    assert.deepEqual(await loadOrCreateDid({ didFile, create }), { did: NEW_DID, source: 'file' })
    assert.equal(creations, 1)
  })

  it('prefers the config DID over did.txt, and did.txt over creating', async () => {
    const didFile = join(dir, 'did.txt')
    await writeFile(didFile, `${FILE_DID}\n`)
    const create = async () => assert.fail('must not create a DID')
    assert.deepEqual(await loadOrCreateDid({ configDid: CONFIG_DID, didFile, create }), {
      did: CONFIG_DID,
      source: 'config',
    })
    assert.deepEqual(await loadOrCreateDid({ didFile, create }), { did: FILE_DID, source: 'file' })
    assert.equal((await readFile(didFile, 'utf8')).trim(), FILE_DID, 'did.txt untouched')
  })

  it('refuses a did.txt or config value that is not a DID', async () => {
    const didFile = join(dir, 'bad.txt')
    await writeFile(didFile, 'hello\n')
    const create = async () => NEW_DID
    await assert.rejects(loadOrCreateDid({ didFile, create }), DidFileError)
    await assert.rejects(
      loadOrCreateDid({ configDid: 'did:example:x', didFile: join(dir, 'none.txt'), create }),
      DidFileError,
    )
  })
})
