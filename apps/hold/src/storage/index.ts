import type { StorageDriver } from './driver.ts'
import { createFilesystemDriver, type FilesystemDriverConfig } from './filesystem.ts'
import type { S3DriverConfig } from './s3.ts'

export type * from './driver.ts'
export * from './errors.ts'
export type { FilesystemDriverConfig } from './filesystem.ts'
export { blobPath, uploadPartPath, uploadPath, uploadPrefix } from './paths.ts'
export type { S3DriverConfig } from './s3.ts'
export { sendLocalRange } from './send-local.ts'
export { SIGNED_STORAGE_PREFIX, StorageUrlSigner } from './signed-urls.ts'
export { bareEtag, MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE } from './validate.ts'

export type StorageConfig = FilesystemDriverConfig | S3DriverConfig

/**
 * The one way to get a driver: the filesystem (embedded default) or S3. The S3 driver, and
 * with it the AWS SDK (some 15-20 MiB of resident memory), is loaded only when configured.
 */
export async function createStorageDriver(config: StorageConfig): Promise<StorageDriver> {
  switch (config.driver) {
    case 'filesystem':
      return createFilesystemDriver(config)
    case 's3': {
      const { createS3Driver } = await import('./s3.ts')
      return createS3Driver(config)
    }
    default:
      throw new TypeError(`unknown storage driver ${(config as { driver?: unknown }).driver}`)
  }
}
