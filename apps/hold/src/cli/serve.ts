import { once } from 'node:events'
import { loadConfigFile } from '@atcr/core/cli'
import { holdConfig } from '../config.ts'
import { Hold } from '../index.ts'

export async function serve(configFile: string | undefined): Promise<void> {
  const hold = await Hold.create(await loadConfigFile(holdConfig, configFile))
  await hold.start()
  await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')])
  await hold.destroy()
}
