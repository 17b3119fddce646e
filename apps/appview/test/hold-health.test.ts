// Hold health against a real hold process and AppView: the hold pushed to is probed at
// /xrpc/_health; once it stops answering, pushes are refused with a 503 naming it, while
// the recorded status says why and since when.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { silentLogger } from '@atcr/core/log'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { openAppViewDatabase } from '../src/db/index.ts'
import { HoldHealth } from '../src/holds/hold-health.ts'
import { type RegistryStack, repoScope, startRegistryStack } from './registry-harness.ts'

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

describe('hold health', () => {
  let stack: RegistryStack

  before(async () => {
    stack = await startRegistryStack({ registry: { hold_health_interval: 1 } })
  })
  after(() => stack?.close())

  it('records the pushed-to hold as up, then refuses pushes with 503 naming it once it is down', async () => {
    const name = stack.nameOf(stack.alice, 'health')
    const open = () =>
      stack.request(`/v2/${name}/blobs/uploads/`, {
        method: 'POST',
        as: stack.alice,
        scopes: [repoScope(name)],
      })
    const first = await open()
    assert.equal(first.status, 202, await first.clone().text())
    const health = stack.appview.ctx.registry.health
    await until('the hold is checked', async () =>
      (await health.statuses()).some((s) => s.did === stack.hold.did && s.status === 'up'),
    )
    const up = (await health.statuses()).find((s) => s.did === stack.hold.did)!
    assert.ok(up.latencyMs !== null && up.latencyMs >= 0)

    await stack.hold.close()
    await until('the hold is seen down', async () =>
      (await health.statuses()).some((s) => s.did === stack.hold.did && s.status === 'down'),
    )
    const refused = await open()
    assert.equal(refused.status, 503)
    const body = (await refused.json()) as { errors: { code: string; message: string }[] }
    assert.equal(body.errors[0]?.code, 'UNAVAILABLE')
    assert.ok(body.errors[0]?.message.includes(`hold ${stack.hold.did}`), body.errors[0]?.message)
    assert.match(body.errors[0]!.message, /is down/)
  })
})

// The checker alone, against a node:http server standing in for a hold's /xrpc/_health
// (only its answers matter here, and a real hold cannot be made to fail one probe).
describe('hold health: one failed probe is not enough', () => {
  it('marks a hold down only after two failed probes in a row', async () => {
    const answers: number[] = []
    const server = createServer((_request, response) => {
      response.statusCode = answers.shift() ?? 200
      response.end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const dir = await makeTempDir('atcr-hold-health-')
    const db = await openAppViewDatabase({ url: null, sqlitePath: join(dir, 'appview.sqlite') })
    const health = new HoldHealth({ db, fetch, intervalMs: 60_000, logger: silentLogger() })
    const hold = { did: 'did:web:flaky.test', endpoint }
    try {
      answers.push(503)
      assert.equal((await health.check(hold)).status, 'up')
      assert.equal(answers.length, 0, 'the failed probe was tried again')
      answers.push(503, 503)
      const down = await health.check(hold)
      assert.equal(down.status, 'down')
      assert.match(down.error ?? '', /answered 503/)
      assert.equal((await health.check(hold)).status, 'up')
    } finally {
      await health.close()
      await db.close()
      server.close()
      await removeTempDir(dir)
    }
  })
})
