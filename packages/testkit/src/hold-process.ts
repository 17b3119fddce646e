import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, LOOPBACK } from './ports.ts'
import type { TestS3 } from './s3.ts'
import { mergeConfig, type ServiceConfig, spawnService, waitForAnswer } from './service-process.ts'

export interface StartHoldProcessOptions {
  /** The PLC directory the hold resolves callers' DIDs with (`http://localhost:PORT`). */
  plcUrl: string
  /** The captain: owner of the hold and its first crew member. */
  ownerDid: string
  /** 'filesystem' (default), or an s3rver from `startS3()`. */
  storage?: 'filesystem' | { s3: TestS3 }
  /** Anonymous blob reads (default true). */
  public?: boolean
  /** Any authenticated account may join the crew (default true). */
  allowAllCrew?: boolean
  /** Redirect reads and part uploads to presigned S3 URLs (default true; s3 only). */
  presignedRedirects?: boolean
  /** Extra config, merged over the generated one section by section. */
  config?: Record<string, Record<string, unknown>>
  /** The hold's log level (default warn; its output is kept and shown if it fails). */
  logLevel?: string
  /** Environment variables added for the process (e.g. `ATCR_HOLD_*` overrides, as a deployment sets them). */
  env?: Record<string, string>
  /** Another `atcr-hold` executable; default the workspace's apps/hold/bin/atcr-hold. */
  bin?: string
  /** The data dir, prepared by the caller, who also removes it (default: a new temp dir). */
  dataDir?: string
  /** The port (default: a free one), e.g. one a data dir was prepared for. */
  port?: number
}

export interface HoldProcess {
  /** `http://localhost:PORT`, the hold's public URL (the host of its did:web). */
  url: string
  did: string
  port: number
  dataDir: string
  child: ChildProcess
  /** What the hold has printed so far (bounded). */
  output(): string
  close(): Promise<void>
}

const DEFAULT_BIN = fileURLToPath(new URL('../../../apps/hold/bin/atcr-hold', import.meta.url))

/**
 * A real hold (the `atcr-hold serve` executable) in a child process on a free loopback
 * port, with a did:web of `localhost:PORT`, dev mode and a temporary data dir. Spawned by
 * path with the running node, so tests exercise the hold exactly as deployed; killed and
 * its data removed on close.
 */
export async function startHoldProcess(options: StartHoldProcessOptions): Promise<HoldProcess> {
  const port = options.port ?? (await freePort())
  const url = `http://localhost:${port}`
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'atcr-hold-')))
  const storage = options.storage ?? 'filesystem'
  const config: ServiceConfig = {
    server: { public_url: url, host: LOOPBACK, port, data_dir: dataDir, mode: 'dev' },
    identity: { did_method: 'web', plc_directory_url: options.plcUrl },
    registration: {
      owner_did: options.ownerDid,
      public: options.public ?? true,
      allow_all_crew: options.allowAllCrew ?? true,
    },
    storage:
      storage === 'filesystem'
        ? { driver: 'filesystem', presigned_redirects: options.presignedRedirects ?? true }
        : {
            driver: 's3',
            presigned_redirects: options.presignedRedirects ?? true,
            s3: {
              endpoint: storage.s3.endpoint,
              region: storage.s3.region,
              bucket: storage.s3.bucket,
              access_key_id: storage.s3.accessKeyId,
              secret_access_key: storage.s3.secretAccessKey,
              force_path_style: true,
            },
          },
    log: { level: options.logLevel ?? 'warn' },
  }
  const service = await spawnService({
    bin: options.bin ?? DEFAULT_BIN,
    configFile: join(dataDir, 'hold.yaml'),
    config: mergeConfig(config, options.config),
    envPrefix: 'ATCR_HOLD',
    env: options.env,
  })
  const close = async () => {
    await service.stop()
    if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true })
  }

  try {
    const base = `http://${LOOPBACK}:${port}`
    await waitForAnswer(service, 'atcr-hold', `${base}/xrpc/_health`, { requireOk: true })
    const response = await fetch(`${base}/.well-known/atproto-did`)
    const did = (await response.text()).trim()
    if (!response.ok || !did.startsWith('did:')) {
      throw new Error(`the hold did not say its DID: ${response.status} ${did}`)
    }
    return { url, did, port, dataDir, child: service.child, output: service.output, close }
  } catch (error) {
    await close()
    throw error
  }
}
