import type { StorageDriver } from './driver.ts'
import { createFilesystemDriver, type FilesystemDriverConfig } from './filesystem.ts'
import { createS3Driver, type S3DriverConfig } from './s3.ts'

export type * from './driver.ts'
export * from './errors.ts'
export type { FilesystemDriverConfig } from './filesystem.ts'
export { blobPath, uploadPartPath, uploadPath, uploadPrefix } from './paths.ts'
export type { S3DriverConfig } from './s3.ts'
export { MAX_PART_NUMBER, MAX_PART_SIZE, MIN_PART_SIZE } from './validate.ts'

export type StorageConfig = FilesystemDriverConfig | S3DriverConfig

/** The one way to get a driver: the filesystem (embedded default) or S3. */
export async function createStorageDriver(config: StorageConfig): Promise<StorageDriver> {
  switch (config.driver) {
    case 'filesystem':
      return createFilesystemDriver(config)
    case 's3':
      return createS3Driver(config)
    default:
      throw new TypeError(`unknown storage driver ${(config as { driver?: unknown }).driver}`)
  }
}
