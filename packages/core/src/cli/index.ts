// What the services' command lines share: exit codes (0 ok, 1 runtime failure, 2 usage or
// config error), loading the config file, and `config init`.
import { access, writeFile } from 'node:fs/promises'
import { type Command, CommanderError } from 'commander'
import { type ConfigDefinition, ConfigError, type ConfigSchema } from '../config/index.ts'

/** A mistake in how a command was called or configured: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** Runs a commander program on `argv` (without node and script) and returns the exit code. */
export async function runCli(program: Command, argv: string[]): Promise<number> {
  program.exitOverride()
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2
    const usage = error instanceof ConfigError || error instanceof UsageError
    process.stderr.write(`${program.name()}: ${(error as Error).message ?? String(error)}\n`)
    return usage ? 2 : 1
  }
}

/** The config from `file` (which must exist when named) with the app's env overrides. */
export async function loadConfigFile<S extends ConfigSchema>(
  definition: ConfigDefinition<S>,
  file: string | undefined,
) {
  if (file) {
    await access(file).catch(() => {
      throw new UsageError(`config file not found: ${file}`)
    })
  }
  return definition.load({ file })
}

/** `config init [FILE|-]`: the fully commented config; refuses to overwrite unless forced. */
export async function writeConfigInit<S extends ConfigSchema>(
  definition: ConfigDefinition<S>,
  file: string,
  force: boolean,
): Promise<void> {
  const yaml = definition.toYaml()
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

/** Adds `config init [file] [--force]` for the app's config definition. */
export function addConfigInitCommand<S extends ConfigSchema>(
  program: Command,
  definition: ConfigDefinition<S>,
): void {
  program
    .command('config')
    .description('configuration files')
    .command('init')
    .description('write a fully commented config with every option and its default')
    .argument('[file]', 'where to write it; - or nothing for stdout', '-')
    .option('-f, --force', 'overwrite an existing file')
    .action((file: string, options: { force?: boolean }) =>
      writeConfigInit(definition, file, options.force ?? false),
    )
}
