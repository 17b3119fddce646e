// The AppView's one config schema: the typed config, env overrides (ATCR_APPVIEW_<PATH>)
// and the commented YAML of `atcr-appview config init` all come from it.
import {
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

export const appviewConfig = defineConfig({
  envPrefix: 'ATCR_APPVIEW',
  title: 'ATCR AppView configuration (atcr-appview serve --config FILE).',
  schema: z.object({
    server: z
      .object({
        base_url: httpUrl()
          .default('http://localhost:5000')
          .describe(
            'Public URL of the registry: image names start with its host, and token auth realms and OAuth redirects use it.',
          ),
        host: z.string().default('0.0.0.0').describe('Address to listen on.'),
        port: z.number().int().min(0).max(65535).default(5000).describe('Port to listen on.'),
        data_dir: z
          .string()
          .min(1)
          .default('/var/lib/atcr')
          .describe('Where the AppView keeps its database and keys.'),
        mode: z
          .enum(['production', 'dev'])
          .default('production')
          .describe(
            'production refuses http and private or loopback addresses when fetching identities, PDSes and holds; dev allows them (local networks and tests only).',
          ),
        service_name: z
          .string()
          .nullable()
          .default(null)
          .describe('Token service name and issuer (default: the host of base_url).'),
        trust_proxy: trustProxyField(),
        shutdown_grace: shutdownGraceField(),
      })
      .describe('HTTP server and data directory.'),
    database: z
      .object({
        url: secret(
          z
            .string()
            .regex(/^postgres(ql)?:\/\//, 'a postgres:// or postgresql:// URL')
            .nullable()
            .default(null)
            .describe(
              'PostgreSQL connection URL, postgres://USER:PASSWORD@HOST:PORT/DB (a secret: it may hold a password). Null: SQLite in <data_dir>/appview.sqlite. Several AppView instances need PostgreSQL (see docs/appview.md).',
            ),
        ),
        max_connections: z
          .number()
          .int()
          .min(1)
          .default(10)
          .describe('Most PostgreSQL connections this instance opens at once.'),
      })
      .describe('The AppView database: SQLite (embedded, the default) or PostgreSQL.'),
    identity: z
      .object({
        plc_directory_url: httpUrl()
          .default('https://plc.directory')
          .describe('PLC directory used to resolve did:plc identities.'),
        handle_resolver_url: httpUrl()
          .nullable()
          .default(null)
          .describe(
            "Resolve handles with this service's com.atproto.identity.resolveHandle (a PDS or handle resolver) instead of DNS and /.well-known; answers are still checked against the DID document. Useful for local networks whose handles have no DNS.",
          ),
        cache_ttl: duration()
          .default(600)
          .describe(
            'How long a resolved DID document (and the hold endpoint read from it) is used before it is resolved again: a hold that moved to another host is followed after at most this long.',
          ),
      })
      .describe('Identity resolution.'),
    registry: z
      .object({
        default_hold_did: did()
          .nullable()
          .default(null)
          .describe(
            'Hold for users whose io.atcr.sailor.profile names no defaultHold. Required for pushes.',
          )
          .meta({ examples: ['did:web:hold01.atcr.io'] }),
        token_expiration: duration()
          .default(300)
          .describe('Lifetime of the registry tokens issued at /auth/token.'),
        max_manifest_size: z
          .number()
          .int()
          .min(1024)
          .default(4 * 1024 * 1024)
          .describe('Largest manifest accepted, in bytes.'),
        upload_part_size: z
          .number()
          .int()
          .min(5 * 1024 * 1024)
          .default(16 * 1024 * 1024)
          .describe(
            'Blob uploads are sent to the hold in parts of this size (S3 needs at least 5 MiB); the part being received waits in a file under <data_dir>/uploads, not in memory.',
          ),
        max_uploads_per_account: z
          .number()
          .int()
          .min(1)
          .default(100)
          .describe(
            'Blob upload sessions one account may have open at once; more are refused with 429 TOOMANYREQUESTS.',
          ),
        hold_health_interval: duration()
          .default(30)
          .describe(
            'How often each hold pushed to is probed at /xrpc/_health (status and latency are recorded in the database); a push to a hold whose last check failed is refused with 503 naming it. 0 turns checking off.',
          ),
        upload_idle_timeout: duration()
          .default(15 * 60)
          .describe(
            'An upload session without a request for this long expires: it is aborted on the hold and its bytes here are removed.',
          ),
      })
      .describe('The OCI registry.'),
    oauth: z
      .object({
        client_name: z
          .string()
          .min(1)
          .default('ATCR')
          .describe('The name users see on their PDS when they sign in.'),
        permission_set: z
          .boolean()
          .default(false)
          .describe(
            "Ask for include:io.atcr.authFullApp instead of granular repo: scopes (only where users' PDSes can resolve that permission set). Changing the scope drops stored OAuth sessions at the next start.",
          ),
        web_session_lifetime: duration()
          .default(30 * 24 * 3600)
          .describe('How long a browser stays signed in.'),
        device_code_lifetime: duration()
          .default(600)
          .describe('How long a device login code (POST /auth/device/code) may wait for approval.'),
        device_poll_interval: duration()
          .default(5)
          .describe('Seconds a device waits between polls of /auth/device/token.'),
      })
      .describe(
        'ATProto OAuth sign-in, web sessions and device login. An https base_url makes the AppView a confidential client (metadata at /oauth-client-metadata.json); an http one a loopback client (dev: base_url must be http://127.0.0.1:PORT).',
      ),
    auth: z
      .object({
        app_password_recheck: duration()
          .default(5)
          .describe(
            'An app password the PDS accepted is let in again without asking the PDS for this long (the several token requests of one push); after that, the PDS is asked to refresh the session that sign-in stored (a few ms) rather than to check the password again (createSession, slow by design). Revoking an app password revokes its sessions, so a revoked one stops working after at most this long.',
          ),
        max_scopes_per_request: z
          .number()
          .int()
          .min(1)
          .default(32)
          .describe(
            'Most scopes one /auth/token request may name; a request naming more is refused (400) before any identity is looked up.',
          ),
        failed_lookup_ttl: duration()
          .default(60)
          .describe(
            'A handle that could not be resolved while granting scopes is not looked up again for this long.',
          ),
        rate_limit: z
          .object({
            window: duration().default(60).describe('The window of the request limits below.'),
            token_per_address: z
              .number()
              .int()
              .min(1)
              .default(600)
              .describe('/auth/token requests per client address and window.'),
            token_per_account: z
              .number()
              .int()
              .min(1)
              .default(300)
              .describe('/auth/token requests naming one account (username) per window.'),
            failed_sign_ins: z
              .number()
              .int()
              .min(1)
              .default(100)
              .describe(
                'Refused sign-ins per account within failed_sign_in_window; the next one is answered 429 with Retry-After without asking the PDS.',
              ),
            failed_sign_ins_per_address: z
              .number()
              .int()
              .min(1)
              .default(500)
              .describe(
                'Refused sign-ins per client address within failed_sign_in_window (an address may be shared by many users), then 429 likewise.',
              ),
            failed_sign_in_window: duration()
              .default(15 * 60)
              .describe('The window of failed_sign_ins.'),
            device_per_address: z
              .number()
              .int()
              .min(1)
              .default(60)
              .describe(
                'Requests to /auth/device/code and /auth/device/token per client address and window.',
              ),
            sign_in_per_address: z
              .number()
              .int()
              .min(1)
              .default(30)
              .describe(
                'Web sign-ins started (/auth/oauth/login with a handle: each resolves the handle and asks its PDS) per client address and window; more get the sign-in page with 429 and Retry-After.',
              ),
          })
          .describe('Abuse limits (429 TOOMANYREQUESTS with Retry-After).'),
      })
      .describe('Sign-in at /auth/token.'),
    ingest: z
      .object({
        enabled: z
          .boolean()
          .default(false)
          .describe(
            'Consume the sources below into the network index. With several instances on one database, one of them consumes at a time (a lease in the database).',
          ),
        sources: z
          .array(
            z.object({
              type: z
                .enum(['firehose', 'jetstream'])
                .describe(
                  'firehose: com.atproto.sync.subscribeRepos of a relay, PDS or hold (every commit verified against its DID key); jetstream: a Jetstream service (JSON, lighter, trusted as is).',
                ),
              url: z
                .url({
                  protocol: /^(wss?|https?)$/,
                  error: 'expected a ws, wss, http or https URL',
                })
                .describe(
                  'The service: wss://bsky.network, a PDS or hold URL, or wss://jetstream2.us-east.bsky.network.',
                ),
              relay: z
                .boolean()
                .default(false)
                .describe(
                  "A firehose that carries every account's repository (a relay), not only those of one PDS: listings of any backfilled account may then come from the index.",
                ),
            }),
          )
          .default([])
          .describe(
            'Where io.atcr.* records come from; each keeps its own cursor in the database.',
          ),
        lease_ttl: duration()
          .default(30)
          .describe(
            'How long the consuming instance holds the lease without renewing it (it renews at a third of this); another instance takes over after the holder stops renewing for this long.',
          ),
        reconnect_delay: duration()
          .default(5)
          .describe('Wait before reconnecting to a source after an error.'),
      })
      .describe(
        'The network indexer: io.atcr.* records of the whole network into the database (see docs/appview.md).',
      ),
    metrics: metricsSection(),
    log: logSection(),
  }),
})

export type AppViewConfig = InferConfig<typeof appviewConfig>

/** The token service name: configured, else the host (and port) of the base URL. */
export function serviceName(config: AppViewConfig): string {
  return config.server.service_name ?? new URL(config.server.base_url).host
}
