// One consumer at a time across AppView instances on one PostgreSQL: a real AppView process
// (atcr-appview serve) takes the ingest lease and indexes from the real PDS firehose while an
// in-process AppView on the same database waits; the process is killed (SIGKILL: it never
// releases the lease), and the other instance takes over once the lease expires, resuming
// from the cursor the first one stored, so nothing is missed or applied twice.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { manifestRkey, NSID, tagRkey } from '@atcr/core/lexicons'
import { captureLogger } from '@atcr/core/log'
import {
  type AppViewProcess,
  freePort,
  hasPostgres,
  startAppViewProcess,
  startNetwork,
  startPostgres,
  type TestAccount,
  type TestNetwork,
  type TestPostgres,
} from '@atcr/testkit'
import { appviewConfig } from '../src/config.ts'
import { AppView } from '../src/index.ts'
import { sha256 } from './registry-client.ts'

const REPO = 'tools/app'
const WAIT_MS = 30_000

async function waitFor<T>(check: () => Promise<T | undefined | null | false>, what: string) {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function putTag(account: TestAccount, tag: string) {
  const digest = sha256(tag)
  await account.agent.com.atproto.repo.putRecord({
    repo: account.did,
    collection: NSID.tag,
    rkey: tagRkey(REPO, tag),
    record: {
      $type: NSID.tag,
      repository: REPO,
      tag,
      manifest: `at://${account.did}/${NSID.manifest}/${manifestRkey(digest)}`,
      updatedAt: new Date().toISOString(),
    },
  })
}

describe('ingest lease across instances', {
  skip: !hasPostgres() && 'PostgreSQL is not installed',
}, () => {
  let net: TestNetwork
  let alice: TestAccount
  let postgres: TestPostgres
  let url: string
  let dir: string
  let first: AppViewProcess | null = null
  let second: AppView | null = null

  const ingest = () => ({
    enabled: true,
    sources: [{ type: 'firehose' as const, url: net.pds.url }],
    lease_ttl: 2,
    reconnect_delay: 0,
  })

  before(async () => {
    ;[net, postgres] = await Promise.all([startNetwork(), startPostgres()])
    alice = await net.pds.createAccount('alice.test')
    url = await postgres.createDatabase('appview')
    dir = await mkdtemp(join(tmpdir(), 'atcr-ingest-lease-'))
  })

  after(async () => {
    await second?.destroy()
    await first?.kill('SIGKILL')
    await postgres?.close()
    await net?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('the other instance takes over when the holder dies, from its cursor', async () => {
    first = await startAppViewProcess({
      dataDir: join(dir, 'first'),
      plcUrl: net.plc.url,
      handleResolverUrl: net.pds.url,
      config: { database: { url }, ingest: ingest() },
    })
    const port = await freePort()
    const config = appviewConfig.load({
      env: {},
      overrides: {
        server: {
          data_dir: join(dir, 'second'),
          mode: 'dev',
          host: '127.0.0.1',
          port,
          base_url: `http://127.0.0.1:${port}`,
        },
        identity: { plc_directory_url: net.plc.url, handle_resolver_url: net.pds.url },
        database: { url },
        ingest: ingest(),
      },
    })
    const logs = captureLogger()
    second = await AppView.create(config, { logger: logs.logger })
    await second.start()
    const lease = second.ctx.ingest.lease
    const firstPid = `:${first.pid}:`
    await waitFor(async () => (await lease.current())?.holder.includes(firstPid), 'the first lease')

    const db = second.ctx.db.db
    const tags = async () =>
      (
        await db
          .selectFrom('index_tag')
          .select('tag')
          .where('did', '=', alice.did)
          .orderBy('tag')
          .execute()
      ).map((t) => t.tag)
    await putTag(alice, 'one')
    await waitFor(async () => (await tags()).includes('one'), 'the first instance to index')
    assert.equal(second.ctx.ingest.consuming, false)

    await first.kill('SIGKILL')
    first = null
    await putTag(alice, 'two')
    await waitFor(async () => (await tags()).includes('two'), 'the second instance to index')
    assert.equal(second.ctx.ingest.consuming, true)
    assert.equal((await lease.current())?.holder, lease.holder)
    // It resumed after what the first applied: only the new tag was applied here.
    assert.equal(second.ctx.index.countsOf(NSID.tag).indexed, 1)
    assert.deepEqual(await tags(), ['one', 'two'])
  })
})
