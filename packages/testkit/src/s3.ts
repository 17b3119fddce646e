import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'
import { LOOPBACK } from './ports.ts'

export interface TestS3 {
  endpoint: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  bucket: string
  close(): Promise<void>
}

export interface StartS3Options {
  /** Keep the objects here across restarts (the local stack); a temporary folder when omitted. */
  directory?: string
  /** Fixed port; a free one when omitted. */
  port?: number
}

/**
 * A real S3-compatible server (s3rver) on loopback with one bucket. It does not check
 * request signatures: tests of signature handling need other means.
 */
export async function startS3(bucket = 'atcr-test', options: StartS3Options = {}): Promise<TestS3> {
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 'atcr-s3-')))
  const server = new S3rver({
    address: LOOPBACK,
    port: options.port ?? 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket, configs: [] }],
  })
  const { port } = await server.run()
  return {
    endpoint: `http://${LOOPBACK}:${port}`,
    region: 'us-east-1',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    bucket,
    close: async () => {
      await server.close()
      if (!options.directory) await rm(directory, { recursive: true, force: true })
    },
  }
}
