import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parse } from 'yaml'
import {
  ConfigError,
  defineConfig,
  duration,
  formatDuration,
  httpUrl,
  type InferConfig,
  parseDuration,
  secret,
  z,
} from '../src/config/index.ts'

/** A small schema shaped like the apps' configs. */
const example = defineConfig({
  envPrefix: 'ATCR_EXAMPLE',
  title: 'Example service configuration.',
  schema: z.object({
    server: z
      .object({
        addr: z.string().default(':8080').describe('Address the HTTP server listens on.'),
        public_url: httpUrl()
          .nullable()
          .default(null)
          .meta({
            description: 'URL clients use to reach this service.',
            examples: ['https://svc.example.com'],
          }),
        public: z.boolean().default(false).describe('Whether anonymous clients may read.'),
        port_limit: z.int().min(1).max(65535).default(5000).describe('Highest port to use.'),
      })
      .describe('HTTP server.'),
    storage: z
      .object({
        driver: z
          .enum(['filesystem', 's3'])
          .default('filesystem')
          .describe('Where blobs are kept.'),
        root_dir: z.string().default('/var/lib/example').describe('Filesystem driver directory.'),
        s3: z
          .object({
            bucket: z.string().default('').describe('S3 bucket name.'),
            endpoint: z
              .url()
              .optional()
              .meta({
                description: 'S3 endpoint, for services other than AWS.',
                examples: ['https://s3.example.com'],
              }),
            secret_access_key: secret(z.string().optional()).describe('S3 secret access key.'),
          })
          .describe('S3 settings, used when the driver is s3.'),
      })
      .describe('Blob storage.'),
    auth: z
      .object({
        token_ttl: duration().default(300).describe('Lifetime of issued tokens.'),
        trusted_dids: z
          .array(z.string())
          .default([])
          .meta({ description: 'DIDs trusted as AppViews.', examples: [['did:web:av.example']] }),
        scopes: z.array(z.string()).default(['pull', 'push']).describe('Scopes granted.'),
      })
      .describe('Authentication.'),
    quota: z
      .object({
        tiers: z
          .array(
            z.object({
              name: z.string().describe('Tier name.'),
              limit: z.int().min(0).describe('Bytes allowed.'),
              description: z.string().default('').describe('Shown to users.'),
            }),
          )
          .default([{ name: 'deckhand', limit: 5_000_000_000, description: 'The free tier.' }])
          .describe('Quota tiers, smallest first.'),
      })
      .describe('Storage quotas.'),
  }),
})

type ExampleConfig = InferConfig<typeof example>

let dir: string
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'atcr-config-'))
})
after(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`)
  writeFileSync(file, text)
  return file
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err
    throw err
  }
  assert.fail('expected a ConfigError')
}

function messages(err: ConfigError): string[] {
  return err.message
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
}

describe('loading', () => {
  test('without a file or environment, every field has its default', () => {
    const config: ExampleConfig = example.load({ env: {} })
    assert.equal(config.server.addr, ':8080')
    assert.equal(config.server.public_url, null)
    assert.equal(config.server.public, false)
    assert.equal(config.storage.driver, 'filesystem')
    assert.equal(config.storage.s3.endpoint, undefined)
    assert.equal(config.auth.token_ttl, 300)
    assert.deepEqual(config.auth.scopes, ['pull', 'push'])
    assert.deepEqual(config.quota.tiers, [
      { name: 'deckhand', limit: 5_000_000_000, description: 'The free tier.' },
    ])
    assert.deepEqual(config, example.defaults())
  })

  test('a file sets some keys; the others keep their defaults', () => {
    const file = yamlFile(
      [
        'server:',
        '  public_url: https://svc.example.com',
        'storage:',
        '  driver: s3',
        '  s3:',
        '    bucket: blobs',
        'auth:',
        '  token_ttl: 1h30m',
        '  # every key of this section commented out would make it null',
        'quota:',
        '',
      ].join('\n'),
    )
    const config = example.load({ file, env: {} })
    assert.equal(config.server.public_url, 'https://svc.example.com')
    assert.equal(config.server.addr, ':8080')
    assert.equal(config.storage.driver, 's3')
    assert.equal(config.storage.s3.bucket, 'blobs')
    assert.equal(config.storage.root_dir, '/var/lib/example')
    assert.equal(config.auth.token_ttl, 5400)
    assert.equal(config.quota.tiers.length, 1)
  })

  test('an empty file gives the defaults', () => {
    assert.deepEqual(example.load({ file: yamlFile(''), env: {} }), example.defaults())
  })

  test('a named file that does not exist is an error naming it', () => {
    const missing = join(dir, 'nope.yaml')
    const err = configError(() => example.load({ file: missing, env: {} }))
    assert.deepEqual(messages(err), [`${missing}: file not found`])
  })

  test('YAML syntax errors give the line', () => {
    const file = yamlFile('server:\n  addr: ":80\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.equal(err.issues[0]?.file, file)
    assert.ok(err.issues[0]?.line)
    assert.match(err.issues[0]?.message ?? '', /invalid YAML/)
  })

  test('overrides go over file and environment', () => {
    const file = yamlFile('storage:\n  root_dir: /from/file\n')
    const config = example.load({
      file,
      env: { ATCR_EXAMPLE_STORAGE_ROOT_DIR: '/from/env' },
      overrides: { storage: { root_dir: '/from/overrides' } },
    })
    assert.equal(config.storage.root_dir, '/from/overrides')
  })
})

test('the config type comes from the schema', () => {
  const config = example.load({ env: {}, overrides: { server: { port_limit: 6000 } } })
  const port: number = config.server.port_limit
  const driver: 'filesystem' | 's3' = config.storage.driver
  const url: string | null = config.server.public_url
  const tiers: { name: string; limit: number; description: string }[] = config.quota.tiers
  // @ts-expect-error: no such key in the schema
  config.server.nope
  assert.throws(
    // @ts-expect-error: overrides are checked against the schema's input type
    () => example.load({ env: {}, overrides: { server: { port_limit: 'high' } } }),
    ConfigError,
  )
  assert.deepEqual([port, driver, url, tiers.length], [6000, 'filesystem', null, 1])
})

describe('environment', () => {
  test('variables are named after the YAML path with the prefix', () => {
    assert.equal(example.envVarFor('storage.s3.bucket'), 'ATCR_EXAMPLE_STORAGE_S3_BUCKET')
    assert.equal(example.envVarFor('server.public_url'), 'ATCR_EXAMPLE_SERVER_PUBLIC_URL')
    assert.throws(() => example.envVarFor('storage.s3'), /no field storage\.s3/)
  })

  test('strings, booleans, integers, lists and nested paths are parsed to their types', () => {
    const config = example.load({
      env: {
        ATCR_EXAMPLE_STORAGE_S3_BUCKET: 'my-bucket',
        ATCR_EXAMPLE_SERVER_PUBLIC: 'true',
        ATCR_EXAMPLE_SERVER_PORT_LIMIT: '8000',
        ATCR_EXAMPLE_AUTH_TRUSTED_DIDS: 'did:web:a.example, did:web:b.example',
        ATCR_EXAMPLE_AUTH_TOKEN_TTL: '1h',
        ATCR_EXAMPLE_STORAGE_DRIVER: 's3',
      },
    })
    assert.equal(config.storage.s3.bucket, 'my-bucket')
    assert.equal(config.server.public, true)
    assert.equal(config.server.port_limit, 8000)
    assert.deepEqual(config.auth.trusted_dids, ['did:web:a.example', 'did:web:b.example'])
    assert.equal(config.auth.token_ttl, 3600)
    assert.equal(config.storage.driver, 's3')
  })

  test('booleans also take 1 and 0', () => {
    assert.equal(example.load({ env: { ATCR_EXAMPLE_SERVER_PUBLIC: '1' } }).server.public, true)
    const file = yamlFile('server:\n  public: true\n')
    assert.equal(
      example.load({ file, env: { ATCR_EXAMPLE_SERVER_PUBLIC: '0' } }).server.public,
      false,
    )
  })

  test('the environment wins over the file', () => {
    const file = yamlFile('storage:\n  s3:\n    bucket: from-file\n')
    const config = example.load({ file, env: { ATCR_EXAMPLE_STORAGE_S3_BUCKET: 'from-env' } })
    assert.equal(config.storage.s3.bucket, 'from-env')
  })

  test('a list of objects takes JSON', () => {
    const tiers = [
      { name: 'small', limit: 10, description: 'Small.' },
      { name: 'big', limit: 1000 },
    ]
    const config = example.load({ env: { ATCR_EXAMPLE_QUOTA_TIERS: JSON.stringify(tiers) } })
    assert.deepEqual(config.quota.tiers, [tiers[0], { ...tiers[1], description: '' }])
  })

  test('an empty variable makes a nullable field null and an optional one unset', () => {
    const file = yamlFile(
      'server:\n  public_url: https://x.example\nstorage:\n  s3:\n    endpoint: https://s3.x\n',
    )
    const config = example.load({
      file,
      env: { ATCR_EXAMPLE_SERVER_PUBLIC_URL: '', ATCR_EXAMPLE_STORAGE_S3_ENDPOINT: '' },
    })
    assert.equal(config.server.public_url, null)
    assert.equal(config.storage.s3.endpoint, undefined)
  })
})

describe('errors', () => {
  test('a wrong type in the file names the YAML path and line', () => {
    const file = yamlFile('server:\n  addr: ":80"\n  port_limit: lots\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [
      `server.port_limit: expected an integer, got "lots" (${file}:3)`,
    ])
    assert.deepEqual(err.issues[0], {
      path: 'server.port_limit',
      message: 'expected an integer, got "lots"',
      file,
      line: 3,
    })
  })

  test('a wrong value from the environment names the variable', () => {
    const err = configError(() => example.load({ env: { ATCR_EXAMPLE_SERVER_PUBLIC: 'maybe' } }))
    assert.deepEqual(messages(err), [
      'server.public: expected a boolean (true or false), got "maybe" (from ATCR_EXAMPLE_SERVER_PUBLIC)',
    ])
    assert.equal(err.issues[0]?.envVar, 'ATCR_EXAMPLE_SERVER_PUBLIC')
  })

  test('a string where a string is expected, given as a number in YAML', () => {
    const file = yamlFile('storage:\n  s3:\n    bucket: 12\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [`storage.s3.bucket: expected a string, got 12 (${file}:3)`])
  })

  test('an unknown key is an error, with a suggestion for a near miss', () => {
    const file = yamlFile('storage:\n  s3:\n    bukcet: blobs\n  colour: blue\nextra: 1\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [
      `storage.s3.bukcet: unknown key (did you mean "bucket"?) (${file}:3)`,
      `storage.colour: unknown key (${file}:4)`,
      `extra: unknown key (${file}:5)`,
    ])
  })

  test('an unknown key inside a list entry is an error', () => {
    const file = yamlFile('quota:\n  tiers:\n    - name: a\n      limit: 1\n      limt: 2\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [
      `quota.tiers[0].limt: unknown key (did you mean "limit"?) (${file}:5)`,
    ])
  })

  test('an out-of-range integer and a bad enum value', () => {
    const err = configError(() =>
      example.load({
        env: { ATCR_EXAMPLE_SERVER_PORT_LIMIT: '70000', ATCR_EXAMPLE_STORAGE_DRIVER: 'gcs' },
      }),
    )
    assert.deepEqual(messages(err), [
      'server.port_limit: must be at most 65535, got 70000 (from ATCR_EXAMPLE_SERVER_PORT_LIMIT)',
      'storage.driver: expected one of "filesystem", "s3", got "gcs" (from ATCR_EXAMPLE_STORAGE_DRIVER)',
    ])
  })

  test('every problem is reported together, from file and environment', () => {
    const file = yamlFile(
      [
        'server:',
        '  public_url: ftp://svc.example.com',
        '  port_limit: 0',
        'storage:',
        '  driver: tape',
        '  s3: [1, 2]',
        'auth:',
        '  token_ttl: soon',
        'quota:',
        '  tiers:',
        '    - name: small',
        '',
      ].join('\n'),
    )
    const err = configError(() =>
      example.load({
        file,
        env: { ATCR_EXAMPLE_SERVER_PUBLIC: 'yes please', ATCR_EXAMPLE_QUOTA_TIERS: '[{' },
      }),
    )
    assert.deepEqual(
      err.issues.map((i) => i.path),
      [
        'storage.s3',
        'quota.tiers',
        'server.public_url',
        'server.public',
        'server.port_limit',
        'storage.driver',
        'auth.token_ttl',
        // The environment's value was not JSON, so the file's list stands, and is checked.
        'quota.tiers[0].limit',
      ],
    )
    const text = err.message
    assert.match(text, /storage\.s3: expected a mapping of keys, got a list/)
    assert.match(text, /quota\.tiers: expected JSON: .* \(from ATCR_EXAMPLE_QUOTA_TIERS\)/)
    assert.match(text, /server\.public_url: expected an http or https URL, got "ftp:/)
    assert.match(text, /server\.port_limit: must be at least 1, got 0/)
    assert.match(text, /auth\.token_ttl: expected a duration .*, got "soon"/)
  })

  test('a required field missing from a list entry is reported at its path', () => {
    const file = yamlFile('quota:\n  tiers:\n    - name: small\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [`quota.tiers[0].limit: is required (${file}:3)`])
  })

  test('a bad secret value is not echoed', () => {
    const file = yamlFile('storage:\n  s3:\n    secret_access_key: 12345\n')
    const err = configError(() => example.load({ file, env: {} }))
    assert.deepEqual(messages(err), [`storage.s3.secret_access_key: expected a string (${file}:3)`])
  })
})

describe('secrets', () => {
  test('redact() hides set secrets and keeps everything else', () => {
    const config = example.load({
      env: { ATCR_EXAMPLE_STORAGE_S3_SECRET_ACCESS_KEY: 'hunter2' },
    })
    const shown = example.redact(config)
    assert.equal(shown.storage.s3.secret_access_key, '[redacted]')
    assert.equal(shown.storage.driver, 'filesystem')
    assert.equal(config.storage.s3.secret_access_key, 'hunter2')
    assert.doesNotMatch(JSON.stringify(shown), /hunter2/)
  })

  test('a secret with a default is refused when the schema is declared', () => {
    assert.throws(
      () =>
        defineConfig({
          envPrefix: 'X',
          schema: z.object({ key: secret(z.string().default('changeme')) }),
        }),
      /key is a secret and must not have a default/,
    )
  })
})

describe('schema declaration', () => {
  test('mistakes are refused when the schema is declared', () => {
    assert.throws(
      () => defineConfig({ envPrefix: 'X', schema: z.object({ a: z.object({ b: z.string() }) }) }),
      /a\.b has no default/,
    )
    assert.throws(
      () =>
        defineConfig({ envPrefix: 'X', schema: z.object({ publicUrl: z.string().default('') }) }),
      /publicUrl must be snake_case/,
    )
    assert.throws(
      () =>
        defineConfig({
          envPrefix: 'X',
          schema: z.object({
            a_b: z.string().default('').describe('A b.'),
            a: z.object({ b: z.string().default('').describe('B.') }).describe('A.'),
          }),
        }),
      /a_b and a\.b both map to X_A_B/,
    )
    assert.throws(
      () => defineConfig({ envPrefix: 'X', schema: z.object({ a: z.string().default('') }) }),
      /a has no description/,
    )
    assert.throws(
      () =>
        defineConfig({
          envPrefix: 'X',
          schema: z.object({ s: z.object({ a: z.string().default('').describe('A.') }) }),
        }),
      /section s has no description/,
    )
    assert.throws(
      () =>
        defineConfig({
          envPrefix: 'X',
          schema: z.object({
            s: z.object({ a: z.string().default('').describe('A.') }).optional(),
          }),
        }),
      /s is a wrapped object; declare sections as a plain z.object\(\)/,
    )
    assert.throws(() => defineConfig({ envPrefix: 'x', schema: z.object({}) }), /envPrefix/)
  })
})

describe('config init YAML', () => {
  const text = example.toYaml()

  test('has every section and key with its description, in schema order', () => {
    let last = -1
    for (const field of example.fields()) {
      const keyAt = text.indexOf(`${field.key}:`, last + 1)
      assert.ok(keyAt > last, `${field.path.join('.')} is missing or out of order`)
      const before = text.slice(last + 1, keyAt)
      assert.ok(before.includes(`# ${field.description}`), `${field.key} has no description`)
      assert.ok(before.includes(field.envVar) || field.secret, `${field.key} has no env name`)
      last = keyAt
    }
    for (const section of ['server', 'storage', 's3', 'auth', 'quota']) {
      assert.match(text, new RegExp(`^\\s*${section}:$`, 'm'))
    }
    assert.match(text, /# HTTP server\.\nserver:\n/)
  })

  test('shows examples for empty defaults, commented out, and durations in units', () => {
    assert.match(text, /^ {2}# public_url: https:\/\/svc\.example\.com$/m)
    assert.match(text, /^ {4}# endpoint: https:\/\/s3\.example\.com$/m)
    assert.match(text, /^ {2}# trusted_dids:\n {2}# {3}- did:web:av\.example$/m)
    assert.match(text, /^ {2}token_ttl: 5m$/m)
    assert.match(text, /# One of: filesystem, s3\./)
    assert.match(text, /# From 1 to 65535\./)
  })

  test('parses back to exactly the defaults', () => {
    const config = example.load({ file: yamlFile(text), env: {} })
    assert.deepEqual(config, example.defaults())
  })

  test('awkward values still parse back to the defaults', () => {
    const awkward = defineConfig({
      envPrefix: 'AWK',
      schema: z.object({
        motd: z.string().default('hello\nworld: #1').describe('Multi-line, with # and :.'),
        indented: z.string().default('  lead\nx').describe('Leading spaces.'),
        quoted: z.string().default('true').describe('Looks like a boolean.'),
        labels: z.record(z.string(), z.string()).default({ 'x y': 'z' }).describe('A map.'),
        nested: z
          .object({ empty: z.object({}).describe('Nothing yet.') })
          .describe('Sections in sections.'),
      }),
    })
    const config = awkward.load({ file: yamlFile(awkward.toYaml()), env: {} })
    assert.deepEqual(config, awkward.defaults())
    assert.equal(config.quoted, 'true')
  })

  test('gives no value to secrets', () => {
    const doc = parse(text) as { storage: { s3: Record<string, unknown> } }
    assert.equal('secret_access_key' in doc.storage.s3, false)
    assert.match(text, /^ {4}# secret_access_key:$/m)
  })
})

describe('durations', () => {
  test('parse and format', () => {
    assert.equal(parseDuration('90'), 90)
    assert.equal(parseDuration('90s'), 90)
    assert.equal(parseDuration('5m'), 300)
    assert.equal(parseDuration('1h30m'), 5400)
    assert.equal(parseDuration('2d'), 172800)
    assert.equal(parseDuration('1x'), undefined)
    assert.equal(parseDuration(''), undefined)
    assert.equal(formatDuration(3600), '1h')
    assert.equal(formatDuration(5400), '90m')
    assert.equal(formatDuration(45), '45s')
    assert.equal(formatDuration(0), '0s')
  })
})
