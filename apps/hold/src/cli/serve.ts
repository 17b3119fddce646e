import { loadConfigFile } from '@atcr/core/cli'
import { untilStopRequested } from '@atcr/core/lifecycle'
import { holdConfig } from '../config.ts'
import { Hold } from '../index.ts'

export async function serve(configFile: string | undefined): Promise<void> {
  const hold = await Hold.create(await loadConfigFile(holdConfig, configFile))
  await hold.start()
  await untilStopRequested()
  await hold.destroy()
}
