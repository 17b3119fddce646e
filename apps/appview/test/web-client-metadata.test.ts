// The confidential OAuth client (an https base URL): its metadata document and JWKS, and
// its key kept private. No PDS here can fetch an https client_id, so the sign-in itself
// runs with the loopback client (web-oauth.test.ts); this checks what PDSes would fetch.
import assert from 'node:assert/strict'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { captureLogger } from '@atcr/core/log'
import { makeTempDir, removeTempDir } from '@atcr/testkit'
import { appviewConfig } from '../src/config.ts'
import { AppView } from '../src/index.ts'

describe('confidential OAuth client metadata', () => {
  let dataDir: string
  let appview: AppView
  let url: string

  before(async () => {
    dataDir = await makeTempDir('atcr-appview-metadata-')
    const config = appviewConfig.load({
      env: {},
      overrides: {
        server: {
          data_dir: dataDir,
          host: '127.0.0.1',
          port: 0,
          base_url: 'https://registry.example.com',
        },
      },
    })
    appview = await AppView.create(config, { logger: captureLogger().logger })
    url = await appview.start()
  })
  after(async () => {
    await appview?.destroy()
    if (dataDir) await removeTempDir(dataDir)
  })

  it('serves its metadata and public JWKS; the key file is 0600', async () => {
    const metadata = (await (await fetch(`${url}/oauth-client-metadata.json`)).json()) as Record<
      string,
      unknown
    >
    assert.equal(metadata.client_id, 'https://registry.example.com/oauth-client-metadata.json')
    assert.deepEqual(metadata.redirect_uris, ['https://registry.example.com/auth/oauth/callback'])
    assert.equal(metadata.token_endpoint_auth_method, 'private_key_jwt')
    assert.equal(metadata.dpop_bound_access_tokens, true)
    assert.equal(metadata.jwks_uri, 'https://registry.example.com/oauth/jwks.json')
    assert.match(String(metadata.scope), /^atproto repo:io\.atcr\.manifest /)
    assert.match(String(metadata.scope), /rpc:io\.atcr\.hold\.initiateUpload\?aud=\*/)
    const jwks = (await (await fetch(`${url}/oauth/jwks.json`)).json()) as {
      keys: Record<string, unknown>[]
    }
    assert.equal(jwks.keys.length, 1)
    assert.equal(jwks.keys[0]!.kty, 'EC')
    assert.equal(jwks.keys[0]!.d, undefined)
    const info = await stat(join(dataDir, 'auth', 'oauth-client-key.pem'))
    assert.equal(info.mode & 0o777, 0o600)
  })

  it('keeps the same key across restarts', async () => {
    const first = await (await fetch(`${url}/oauth/jwks.json`)).text()
    const again = await AppView.create(appview.ctx.config, { logger: captureLogger().logger })
    try {
      const second = await again.app.inject('/oauth/jwks.json')
      assert.equal(second.body, first)
    } finally {
      await again.destroy()
    }
  })
})
