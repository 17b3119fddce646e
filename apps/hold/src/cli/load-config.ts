import { access } from 'node:fs/promises'
import { type HoldConfig, holdConfig } from '../config.ts'
import { UsageError } from './errors.ts'

/** The config from FILE (which must exist when named) with ATCR_HOLD_* env overrides. */
export async function loadHoldConfig(file: string | undefined): Promise<HoldConfig> {
  if (file) {
    await access(file).catch(() => {
      throw new UsageError(`config file not found: ${file}`)
    })
  }
  return holdConfig.load({ file })
}
