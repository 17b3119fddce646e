import assert from 'node:assert/strict'
import diagnosticsChannel from 'node:diagnostics_channel'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import {
  addressBlockReason,
  createGuardedFetch,
  createRedirectCheck,
  type LookupAll,
  ResponseTooLargeError,
  SsrfBlockedError,
} from '@atcr/core/identity'
import { type DidWebServer, startDidWebServer, staticDns } from '@atcr/testkit'

// Every connection the guarded fetch's agent attempts or makes, seen through undici's
// diagnostics channels: a refusal "before connecting" must leave these at zero.
interface ConnectWatch {
  attempts: string[]
  connected: string[]
  stop(): void
}

function watchConnections(): ConnectWatch {
  const attempts: string[] = []
  const connected: string[] = []
  type ConnectMessage = { connectParams: { hostname: string; port: string } }
  const onAttempt = (message: unknown) => {
    const { hostname, port } = (message as ConnectMessage).connectParams
    attempts.push(`${hostname}:${port}`)
  }
  const onConnected = (message: unknown) => {
    const { hostname, port } = (message as ConnectMessage).connectParams
    connected.push(`${hostname}:${port}`)
  }
  diagnosticsChannel.subscribe('undici:client:beforeConnect', onAttempt)
  diagnosticsChannel.subscribe('undici:client:connected', onConnected)
  return {
    attempts,
    connected,
    stop: () => {
      diagnosticsChannel.unsubscribe('undici:client:beforeConnect', onAttempt)
      diagnosticsChannel.unsubscribe('undici:client:connected', onConnected)
    },
  }
}

/** A resolver that never asks real DNS: answers from a table, records what was asked. */
function tableLookup(table: Record<string, string[]>): LookupAll & { asked: string[] } {
  const asked: string[] = []
  const lookup = (hostname: string, callback: Parameters<LookupAll>[1]) => {
    asked.push(hostname)
    const addresses = table[hostname]
    if (!addresses) {
      const error: NodeJS.ErrnoException = new Error(`ENOTFOUND ${hostname}`)
      error.code = 'ENOTFOUND'
      return callback(error, [])
    }
    callback(
      null,
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
    )
  }
  return Object.assign(lookup, { asked })
}

async function refused(promise: Promise<unknown>, reason?: string): Promise<SsrfBlockedError> {
  const error = await promise.then(
    () => assert.fail('the request was not refused'),
    (e: unknown) => e,
  )
  assert.ok(error instanceof SsrfBlockedError, `expected SsrfBlockedError, got ${error}`)
  if (reason) assert.equal(error.reason, reason)
  return error
}

describe('SSRF guard: which addresses are refused', () => {
  it('allows only public unicast in production, IPv4 and IPv6', () => {
    const cases: Array<[string, string | null]> = [
      ['8.8.8.8', null],
      ['2606:4700:4700::1111', null],
      ['127.0.0.1', 'loopback'],
      ['127.1.2.3', 'loopback'],
      ['::1', 'loopback'],
      ['10.1.2.3', 'private'],
      ['172.16.5.4', 'private'],
      ['192.168.1.1', 'private'],
      ['169.254.169.254', 'linkLocal'],
      ['fe80::1', 'linkLocal'],
      ['fc00::1', 'uniqueLocal'],
      ['fd12:3456::1', 'uniqueLocal'],
      ['100.64.0.1', 'carrierGradeNat'],
      ['224.0.0.1', 'multicast'],
      ['ff02::1', 'multicast'],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:10.0.0.1', 'private'],
      ['::ffff:169.254.169.254', 'linkLocal'],
      ['64:ff9b::a00:1', 'reserved'],
      ['not-an-ip', 'invalidAddress'],
    ]
    for (const [ip, reason] of cases) {
      assert.equal(addressBlockReason(ip, 'production'), reason, ip)
    }
  })

  it('allows loopback and private networks in dev mode, but never link-local', () => {
    assert.equal(addressBlockReason('127.0.0.1', 'dev'), null)
    assert.equal(addressBlockReason('::1', 'dev'), null)
    assert.equal(addressBlockReason('172.28.0.3', 'dev'), null)
    assert.equal(addressBlockReason('169.254.169.254', 'dev'), 'linkLocal')
  })
})

type GuardedFetch = ReturnType<typeof createGuardedFetch>

/**
 * `send` (a request through a guarded fetch) is refused for http and loopback in
 * production, for a name that resolves to a private address, and for link-local in dev
 * mode too; the server never sees one of them.
 */
async function assertRefusesForbiddenTargets(
  server: DidWebServer,
  send: (fetch: GuardedFetch, url: string) => Promise<unknown>,
): Promise<void> {
  const port = new URL(server.url).port
  const production = createGuardedFetch({
    mode: 'production',
    lookup: tableLookup({ 'intranet.example': ['10.1.2.3'] }),
  })
  const dev = createGuardedFetch({ mode: 'dev', lookup: staticDns().lookup })
  try {
    const before = server.requests.length
    await refused(send(production, `${server.url}/sink`), 'protocol')
    await refused(send(production, `https://127.0.0.1:${port}/sink`), 'loopback')
    const named = await refused(send(production, 'https://intranet.example/sink'), 'private')
    assert.equal(named.address, '10.1.2.3')
    await refused(send(dev, 'http://169.254.169.254/latest/meta-data/'), 'linkLocal')
    assert.equal(server.requests.length, before)
  } finally {
    await production.close()
    await dev.close()
  }
}

describe('SSRF guard: guarded fetch', () => {
  let server: DidWebServer
  let other: DidWebServer
  let watch: ConnectWatch

  before(async () => {
    server = await startDidWebServer()
    other = await startDidWebServer()
    server.setAtprotoDid('did:plc:ssrftestaaaaaaaaaaaaaaaa')
    other.setAtprotoDid('did:plc:othertestaaaaaaaaaaaaaaa')
    watch = watchConnections()
  })
  after(async () => {
    watch.stop()
    await server.close()
    await other.close()
  })

  const counts = () => ({ attempts: watch.attempts.length, connected: watch.connected.length })

  it('production refuses http before any connection is attempted', async () => {
    const fetch = createGuardedFetch({ mode: 'production', lookup: staticDns().lookup })
    try {
      const before = counts()
      await refused(fetch(`${server.url}/.well-known/atproto-did`), 'protocol')
      assert.deepEqual(counts(), before)
      assert.equal(server.requests.length, 0)
    } finally {
      await fetch.close()
    }
  })

  it('production refuses loopback: IP literals, localhost and [::1]', async () => {
    const fetch = createGuardedFetch({ mode: 'production', lookup: staticDns().lookup })
    const port = new URL(server.url).port
    try {
      const before = counts()
      const v4 = await refused(fetch(`https://127.0.0.1:${port}/`), 'loopback')
      assert.equal(v4.address, '127.0.0.1')
      await refused(fetch(`https://[::1]:${port}/`), 'loopback')
      await refused(fetch(`https://[::ffff:127.0.0.1]:${port}/`), 'loopback')
      // IP literals are refused before undici is even asked to connect.
      assert.deepEqual(counts(), before)
      // A name is refused on the address it resolves to.
      const named = await refused(fetch(`https://localhost:${port}/`), 'loopback')
      assert.match(named.address ?? '', /^(127\.|::1$)/)
      assert.equal(watch.connected.length, before.connected)
      assert.equal(server.requests.length, 0)
    } finally {
      await fetch.close()
    }
  })

  it('production refuses private and link-local IP literals before connecting', async () => {
    const fetch = createGuardedFetch({ mode: 'production', lookup: staticDns().lookup })
    try {
      const before = counts()
      await refused(fetch('https://10.0.0.5/'), 'private')
      await refused(fetch('https://192.168.1.1/admin'), 'private')
      await refused(fetch('https://169.254.169.254/latest/meta-data/'), 'linkLocal')
      await refused(fetch('https://[fd00::1]/'), 'uniqueLocal')
      assert.deepEqual(counts(), before)
    } finally {
      await fetch.close()
    }
  })

  it('production refuses a name that resolves to a private address, at lookup time', async () => {
    const lookup = tableLookup({
      'intranet.example': ['10.1.2.3'],
      'metadata.example': ['169.254.169.254'],
      // One bad answer among good ones refuses the name (DNS rebinding).
      'mixed.example': ['93.184.216.34', '192.168.0.10'],
    })
    const fetch = createGuardedFetch({ mode: 'production', lookup })
    try {
      const before = counts()
      const error = await refused(fetch('https://intranet.example/'), 'private')
      assert.equal(error.address, '10.1.2.3')
      await refused(fetch('https://metadata.example/'), 'linkLocal')
      const mixed = await refused(fetch('https://mixed.example/'), 'private')
      assert.equal(mixed.address, '192.168.0.10')
      assert.deepEqual(lookup.asked, ['intranet.example', 'metadata.example', 'mixed.example'])
      // The connector was reached, but no connection was ever made.
      assert.equal(watch.connected.length, before.connected)
    } finally {
      await fetch.close()
    }
  })

  it('checks every redirect hop: a trusted origin cannot bounce us to loopback', async () => {
    const otherPort = new URL(other.url).port
    server.route('/bounce', (_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/.well-known/atproto-did` })
      res.end()
    })
    server.route('/inside', (_req, res) => {
      res.writeHead(301, { location: '/.well-known/atproto-did' })
      res.end()
    })
    // Production mode, with only the first server's origin exempted (as an operator would
    // exempt an internal service): the first hop is allowed, the second must not be.
    const fetch = createGuardedFetch({
      mode: 'production',
      trustedOrigins: [server.url],
      lookup: staticDns().lookup,
    })
    try {
      const inside = await fetch(`${server.url}/inside`)
      assert.equal(inside.status, 200)
      assert.equal(await inside.text(), 'did:plc:ssrftestaaaaaaaaaaaaaaaa')

      const before = counts()
      const error = await refused(fetch(`${server.url}/bounce`), 'protocol')
      assert.match(error.url, /127\.0\.0\.1/)
      assert.equal(other.requests.length, 0)
      assert.equal(watch.connected.length, before.connected)
    } finally {
      await fetch.close()
    }
  })

  it('a redirect to loopback over https is refused for the address', async () => {
    server.route('/bounce-https', (_req, res) => {
      res.writeHead(307, { location: 'https://127.0.0.1/' })
      res.end()
    })
    const fetch = createGuardedFetch({
      mode: 'production',
      trustedOrigins: [server.url],
      lookup: staticDns().lookup,
    })
    try {
      await refused(fetch(`${server.url}/bounce-https`), 'loopback')
    } finally {
      await fetch.close()
    }
  })

  it('dev mode allows http and loopback, follows redirects, and drops credentials across origins', async () => {
    const otherPort = new URL(other.url).port
    let seenAuthorization: string | undefined = 'unset'
    other.route('/whoami', (req, res) => {
      seenAuthorization = req.headers.authorization
      res.end('ok')
    })
    server.route('/to-other', (_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/whoami` })
      res.end()
    })
    const fetch = createGuardedFetch({ mode: 'dev', lookup: staticDns().lookup })
    try {
      const direct = await fetch(`${server.url}/.well-known/atproto-did`)
      assert.equal(await direct.text(), 'did:plc:ssrftestaaaaaaaaaaaaaaaa')
      const redirected = await fetch(`${server.url}/to-other`, {
        headers: { authorization: 'Bearer secret' },
      })
      assert.equal(await redirected.text(), 'ok')
      assert.equal(seenAuthorization, undefined)
      // Cloud metadata stays out of reach even in dev mode.
      await refused(fetch('http://169.254.169.254/latest/meta-data/'), 'linkLocal')
    } finally {
      await fetch.close()
    }
  })

  it('streams an upload under the same rules: a refused address never gets a byte', async () => {
    const upload = (fetch: GuardedFetch, url: string) =>
      fetch.upload(url, {
        method: 'PUT',
        headers: new Headers({ 'content-length': '10' }),
        body: Readable.from([Buffer.from('part '), Buffer.from('bytes')]),
      })
    await assertRefusesForbiddenTargets(server, upload)
    const dev = createGuardedFetch({ mode: 'dev', lookup: staticDns().lookup })
    try {
      let received = ''
      server.route('/sink', async (req, res) => {
        for await (const chunk of req) received += chunk
        res.writeHead(201, { etag: '"part-1"', 'content-type': 'application/json' })
        res.end(JSON.stringify({ length: received.length }))
      })
      const answer = await upload(dev, `${server.url}/sink`)
      assert.equal(answer.status, 201)
      assert.equal(answer.headers.get('etag'), '"part-1"')
      assert.deepEqual(await answer.json(), { length: 10 })
      assert.equal(received, 'part bytes')

      // A status no Response can hold fails the request; it does not bring the process down.
      server.route('/nonsense', (req, res) => {
        req.resume()
        res.writeHead(999)
        res.end()
      })
      await assert.rejects(upload(dev, `${server.url}/nonsense`), RangeError)
    } finally {
      await dev.close()
    }
  })

  it('makes small requests under the same rules, reads answers whole up to a limit, follows no redirect', async () => {
    const call = (fetch: GuardedFetch, url: string, maxBytes = 1024) =>
      fetch.request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"n":1}',
        maxBytes,
      })
    await assertRefusesForbiddenTargets(server, call)
    const dev = createGuardedFetch({ mode: 'dev', lookup: staticDns().lookup })
    try {
      server.route('/echo', async (req, res) => {
        let body = ''
        for await (const chunk of req) body += chunk
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ method: req.method, type: req.headers['content-type'], body }))
      })
      const answer = await call(dev, `${server.url}/echo?x=1`)
      assert.equal(answer.status, 200)
      assert.deepEqual(JSON.parse(answer.text), {
        method: 'POST',
        type: 'application/json',
        body: '{"n":1}',
      })

      server.route('/big', (req, res) => {
        req.resume()
        res.end('x'.repeat(4096))
      })
      await assert.rejects(call(dev, `${server.url}/big`), ResponseTooLargeError)

      server.route('/moved', (req, res) => {
        req.resume()
        res.writeHead(307, { location: `http://127.0.0.1:${new URL(other.url).port}/echo` })
        res.end()
      })
      const otherBefore = other.requests.length
      assert.equal((await call(dev, `${server.url}/moved`)).status, 307)
      assert.equal(other.requests.length, otherBefore)
    } finally {
      await dev.close()
    }
  })

  it('fails an upload whose answer never comes once the body is sent', async () => {
    // A hold that takes the whole part, then hangs up or stays silent; a caller that gives up.
    const fetch = createGuardedFetch({
      mode: 'dev',
      lookup: staticDns().lookup,
      headersTimeoutMs: 300,
    })
    const bodyRead = new Map<string, () => void>()
    const bodyReadPromise = (path: string) =>
      new Promise<void>((resolve) => bodyRead.set(path, resolve))
    for (const path of ['/hang-up', '/silent']) {
      server.route(path, async (req) => {
        for await (const _ of req) {
          // Read it all.
        }
        bodyRead.get(path)?.()
        if (path === '/hang-up') req.socket.destroy()
      })
    }
    const send = (path: string, signal?: AbortSignal) =>
      fetch.upload(`${server.url}${path}`, {
        method: 'PUT',
        headers: new Headers({ 'content-length': '10' }),
        body: Readable.from([Buffer.from('part bytes')]),
        signal,
      })
    try {
      const read = bodyReadPromise('/hang-up')
      await assert.rejects(send('/hang-up'), /socket hang up/)
      await read

      await assert.rejects(send('/silent'), /sent no answer in time/)

      const caller = new AbortController()
      const silentRead = bodyReadPromise('/silent')
      const aborted = send('/silent', caller.signal)
      await silentRead
      caller.abort()
      await assert.rejects(aborted, { name: 'AbortError' })
    } finally {
      await fetch.close()
    }
  })

  it('refuses schemes other than http(s) in every mode', async () => {
    const fetch = createGuardedFetch({ mode: 'dev', lookup: staticDns().lookup })
    try {
      await refused(fetch('file:///etc/passwd'), 'protocol')
    } finally {
      await fetch.close()
    }
  })
})

describe('SSRF guard: where a redirect may send clients', () => {
  const dns = staticDns({
    addresses: {
      'hold.example.com': ['93.184.216.34'],
      'sneaky.example.com': ['93.184.216.34', '10.0.0.7'],
      'metadata.example.com': ['169.254.169.254'],
      'loop.example.com': ['127.0.0.1'],
    },
  })

  it('production passes only https to names whose every address is public', async () => {
    const check = createRedirectCheck({ mode: 'production', lookup: dns.lookup })
    assert.equal(await check(new URL('https://hold.example.com/storage/x?sig=1')), null)
    assert.equal(await check(new URL('http://hold.example.com/storage/x')), 'protocol')
    assert.equal(await check(new URL('https://loop.example.com/x')), 'loopback')
    assert.equal(await check(new URL('https://localhost/x')), 'loopback')
    assert.equal(await check(new URL('https://127.0.0.1:9000/x')), 'loopback')
    assert.equal(await check(new URL('https://[::1]/x')), 'loopback')
    assert.equal(await check(new URL('https://sneaky.example.com/x')), 'private')
    assert.equal(await check(new URL('https://metadata.example.com/x')), 'linkLocal')
    assert.equal(await check(new URL('https://nowhere.example.com/x')), 'invalidAddress')
  })

  it('dev passes loopback http but still never link-local', async () => {
    const check = createRedirectCheck({ mode: 'dev', lookup: dns.lookup })
    assert.equal(await check(new URL('http://127.0.0.1:9000/storage/x')), null)
    assert.equal(await check(new URL('http://loop.example.com/x')), null)
    assert.equal(await check(new URL('http://169.254.169.254/latest/meta-data')), 'linkLocal')
    assert.equal(await check(new URL('file:///etc/passwd')), 'protocol')
  })
})
