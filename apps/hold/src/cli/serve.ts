import { once } from 'node:events'
import { Hold } from '../index.ts'
import { loadHoldConfig } from './load-config.ts'

export async function serve(configFile: string | undefined): Promise<void> {
  const hold = await Hold.create(await loadHoldConfig(configFile))
  await hold.start()
  await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')])
  await hold.destroy()
}
