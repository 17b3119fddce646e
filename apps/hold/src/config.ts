// The hold's one config schema: the typed config, env overrides (ATCR_HOLD_<YAML_PATH>)
// and the commented YAML of `atcr-hold config init` all come from it.
import {
  ConfigError,
  type ConfigIssue,
  defineConfig,
  did,
  duration,
  httpUrl,
  type InferConfig,
  logSection,
  metricsSection,
  secret,
  shutdownGraceField,
  trustProxyField,
  z,
} from '@atcr/core/config'

const tier = z.object({
  name: z.string().min(1).max(64).describe('Tier name, shown to users (e.g. deckhand).'),
  limit: z
    .number()
    .int()
    .min(0)
    .nullable()
    .default(null)
    .describe('Storage limit in bytes; null means unlimited.'),
  description: z.string().max(1024).default('').describe('What the tier is for.'),
})

/**
 * A captain-record flag: a value set here is written at every start; null (the default)
 * keeps what the record says, so changes made on the admin pages survive restarts (a new
 * hold starts with false).
 */
function captainFlag(description: string) {
  return z
    .boolean()
    .nullable()
    .default(null)
    .describe(`${description} Null keeps the captain record's value (false on a new hold).`)
}

export const holdConfig = defineConfig({
  envPrefix: 'ATCR_HOLD',
  title: 'ATCR hold configuration (atcr-hold serve --config FILE).',
  schema: z.object({
    server: z
      .object({
        public_url: httpUrl()
          .default('http://localhost:8080')
          .describe(
            'URL at which clients and AppViews reach this hold. The did:web identity is derived from it.',
          ),
        host: z.string().default('0.0.0.0').describe('Address to listen on.'),
        port: z.number().int().min(0).max(65535).default(8080).describe('Port to listen on.'),
        data_dir: z
          .string()
          .min(1)
          .default('/var/lib/atcr-hold')
          .describe('Where the hold keeps its database, keys, did.txt and (filesystem) blobs.'),
        mode: z
          .enum(['production', 'dev'])
          .default('production')
          .describe(
            'production refuses http and private or loopback addresses when fetching identities; dev allows them (local networks and tests only).',
          ),
        trust_proxy: trustProxyField(),
        shutdown_grace: shutdownGraceField(),
      })
      .describe('HTTP server and data directory.'),
    identity: z
      .object({
        did_method: z
          .enum(['web', 'plc'])
          .default('web')
          .describe('web derives did:web from public_url; plc creates and maintains a did:plc.'),
        did: did()
          .nullable()
          .default(null)
          .describe('Use this DID instead of did.txt in the data dir or a new one.'),
        plc_directory_url: httpUrl()
          .default('https://plc.directory')
          .describe('PLC directory for did:plc identities.'),
        rotation_key_path: z
          .string()
          .nullable()
          .default(null)
          .describe(
            'File with the did:plc rotation key (hex secp256k1). Needed to create the DID and to update it when public_url or the signing key changes.',
          ),
        handle_resolver_url: httpUrl()
          .nullable()
          .default(null)
          .describe(
            "Resolve handles (admin sign-in, adding crew by handle) with this service's com.atproto.identity.resolveHandle (a PDS or handle resolver) instead of DNS and /.well-known; answers are still checked against the DID document. Useful for local networks whose handles have no DNS.",
          ),
      })
      .describe('The hold identity.'),
    registration: z
      .object({
        owner_did: did()
          .nullable()
          .default(null)
          .describe('DID of the hold owner (captain). Required.')
          .meta({ examples: ['did:plc:abcdefghijklmnopqrstuvwx'] }),
        public: captainFlag('Allow anonymous blob reads (pulls).'),
        allow_all_crew: captainFlag('Let any authenticated user join the crew with requestCrew.'),
        enable_bluesky_posts: captainFlag(
          'Announce pushes as Bluesky posts (recorded in the captain record).',
        ),
        region: z.string().max(64).default('').describe('Region shown in the captain record.'),
        display_name: z
          .string()
          .max(64)
          .default('')
          .describe('Display name of the hold profile (default: the hostname).'),
        successor: did()
          .nullable()
          .default(null)
          .describe(
            "DID of the hold that replaces this one (a move to a new DID), written to the captain record's successor field; null keeps what the record says.",
          )
          .meta({ examples: ['did:web:hold02.example.com'] }),
      })
      .describe('Ownership and who may join.'),
    storage: z
      .object({
        driver: z
          .enum(['filesystem', 's3'])
          .default('filesystem')
          .describe('Where blobs are kept.'),
        filesystem: z
          .object({
            root_dir: z
              .string()
              .nullable()
              .default(null)
              .describe('Blob directory (default: <data_dir>/blobs).'),
          })
          .describe('Filesystem driver.'),
        s3: z
          .object({
            endpoint: z
              .string()
              .nullable()
              .default(null)
              .describe('S3 API URL as the hold reaches it (omit for AWS).'),
            public_endpoint: z
              .string()
              .nullable()
              .default(null)
              .describe('S3 API URL as clients reach it, used to presign (default: endpoint).'),
            region: z.string().default('us-east-1').describe('S3 region.'),
            bucket: z.string().default('').describe('S3 bucket.'),
            prefix: z.string().default('').describe('Key prefix inside the bucket.'),
            force_path_style: z
              .boolean()
              .default(true)
              .describe('Path-style S3 URLs (most non-AWS servers need them).'),
            access_key_id: z.string().nullable().default(null).describe('S3 access key id.'),
            secret_access_key: secret(z.string().nullable().default(null)).describe(
              'S3 secret access key.',
            ),
            connect_timeout: duration()
              .default(5)
              .describe('A connection to S3 not made within this long fails (and is retried).'),
            request_timeout: duration()
              .default(60)
              .describe(
                'A request to S3 whose connection stays silent this long fails (and is retried): a stalled S3 answers a 5xx to the client instead of holding the upload or download forever.',
              ),
          })
          .describe('S3 driver (any S3-compatible service).'),
        presigned_redirects: z
          .boolean()
          .default(true)
          .describe(
            "Send blob readers to presigned URLs (S3's, or on the filesystem driver the hold's own signed /storage/ URLs) instead of answering getBlob with the bytes.",
          ),
        inline_max_bytes: z
          .number()
          .int()
          .min(0)
          .default(1024 ** 2)
          .describe(
            "On the filesystem driver, getBlob answers a blob of at most this many bytes with the bytes even when presigned_redirects is on: a small blob costs less to send than the client's second request to the hold's /storage/ URL (0: redirect every blob).",
          ),
        presign_ttl: duration().default(900).describe('Lifetime of presigned URLs.'),
        cdn_base_url: z
          .string()
          .nullable()
          .default(null)
          .describe('Optional CDN base URL for blob downloads.'),
      })
      .describe('Blob storage.'),
    uploads: z
      .object({
        expiry: duration().default(86400).describe('Abandoned uploads are removed after this.'),
        max_open_per_account: z
          .number()
          .int()
          .min(1)
          .default(32)
          .describe(
            'Uploads one account may have open at once (the owner is not limited); more are refused with TooManyUploads.',
          ),
        max_open_bytes_per_account: z
          .number()
          .int()
          .min(0)
          .nullable()
          .default(10 * 1024 ** 3)
          .describe(
            'Bytes the open uploads of one account may hold (the owner is not limited; null: no cap); a part past it is refused with QuotaExceeded.',
          ),
      })
      .describe('Multipart uploads.'),
    quota: z
      .object({
        tiers: z.array(tier).default([]).describe('Storage tiers; none means no limits.'),
        default_tier: z
          .string()
          .nullable()
          .default(null)
          .describe('Tier of new crew members (default: the first tier).'),
        owner_reserve: z
          .number()
          .int()
          .min(0)
          .default(1024 ** 3)
          .describe(
            'Free bytes of the storage kept for the owner (filesystem driver): an upload of anyone else that would leave less free is refused with StorageFull (507).',
          ),
      })
      .describe('Quotas.'),
    auth: z
      .object({
        trusted_appview_did: did()
          .nullable()
          .default(null)
          .describe('DID of the AppView allowed to call as itself (e.g. updateCrewTier).'),
      })
      .describe('Who the hold trusts.'),
    stats: z
      .object({
        flush_interval: duration()
          .default(60)
          .describe(
            'Pulls, and pushes that add no layer record (a known manifest under a new tag), are counted in memory and written to the stats records at most this often per repository (0: right after, still off the request path).',
          ),
      })
      .describe('Push and pull counters.'),
    firehose: z
      .object({
        retention: duration()
          .default(604800)
          .describe(
            'subscribeRepos events older than this are pruned (the newest is always kept); a cursor older than the oldest kept event replays from there after an OutdatedCursor info message.',
          ),
      })
      .describe('The event log of com.atproto.sync.subscribeRepos.'),
    gc: z
      .object({
        grace_period: duration()
          .default(86400)
          .describe('Unreferenced blobs younger than this are kept (pushes in flight).'),
      })
      .describe('Garbage collection.'),
    admin: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            "Serve the owner's admin pages at /admin (sign-in with ATProto OAuth; only the owner and crew members with crew:admin get in).",
          ),
        base_url: httpUrl()
          .nullable()
          .default(null)
          .describe(
            'Where browsers reach the admin pages, for the OAuth redirect. Default: public_url when it is https; with an http public_url, http://127.0.0.1 on server.port (a loopback OAuth client, for local use). Sign-in needs https or an http loopback address.',
          ),
        client_name: z
          .string()
          .min(1)
          .max(128)
          .default('ATCR hold admin')
          .describe('Name of the OAuth client shown on the PDS consent page (https only).'),
        session_lifetime: duration()
          .default(43200)
          .describe('An admin sign-in expires after this; then sign in again.'),
        sign_ins_per_minute: z
          .number()
          .int()
          .min(1)
          .default(30)
          .describe(
            'Sign-ins started (a handle posted to /admin/auth/login: each resolves the handle and asks its PDS) per client address and minute; more get the sign-in page with 429 and Retry-After.',
          ),
      })
      .describe("The owner's admin web pages."),
    metrics: metricsSection(),
    log: logSection(),
  }),
})

export type HoldConfig = InferConfig<typeof holdConfig>

/**
 * What `serve` needs beyond the schema (whose defaults must stay valid for `config init`),
 * checked whole before the data dir is touched: a first start with an incomplete config
 * must leave nothing behind that a corrected one would then trip over.
 */
export function checkServeConfig(config: HoldConfig): void {
  const issues: ConfigIssue[] = []
  const issue = (path: string, message: string) =>
    issues.push({ path, message: `${message} (or env ${holdConfig.envVarFor(path)})` })
  if (!config.registration.owner_did) {
    issue('registration.owner_did', 'the hold needs an owner DID (the captain)')
  }
  const { identity, storage } = config
  if (identity.did_method === 'plc' && !identity.did && !identity.rotation_key_path) {
    issue('identity.rotation_key_path', 'did:plc needs a rotation key file to create the DID')
  }
  if (storage.driver === 's3' && !storage.s3.bucket) {
    issue('storage.s3.bucket', 'the s3 driver needs a bucket')
  }
  if (issues.length > 0) throw new ConfigError(issues)
}

/** Where browsers reach the admin pages: admin.base_url, or what public_url implies. */
export function adminBaseUrl(config: Pick<HoldConfig, 'admin' | 'server'>): string {
  if (config.admin.base_url) return config.admin.base_url
  const publicUrl = new URL(config.server.public_url)
  if (publicUrl.protocol === 'https:') return publicUrl.origin
  // Local use: the browser on this machine reaches the port the hold listens on.
  return `http://127.0.0.1:${config.server.port}`
}
