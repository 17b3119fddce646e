import { writeFile } from 'node:fs/promises'
import { holdConfig } from '../config.ts'
import { UsageError } from './errors.ts'

export async function configInit(file: string, force: boolean): Promise<void> {
  const yaml = holdConfig.toYaml()
  if (file === '-') {
    process.stdout.write(yaml)
    return
  }
  try {
    await writeFile(file, yaml, { flag: force ? 'w' : 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`${file} exists; use --force to overwrite it`)
    }
    throw error
  }
  process.stderr.write(`wrote ${file}\n`)
}
