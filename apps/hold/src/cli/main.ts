// atcr-hold: run a hold, write its config, back up and restore its repo.
// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.

import { ConfigError } from '@atcr/core/config'
import { Command, CommanderError } from 'commander'
import { HoldConfigError } from '../identity.ts'
import { configInit } from './config-init.ts'
import { UsageError } from './errors.ts'
import { repoExport, repoImport } from './repo.ts'
import { serve } from './serve.ts'

export function buildCli(): Command {
  const program = new Command('atcr-hold')
    .description('ATCR hold: blob storage with an embedded AT Protocol PDS')
    .exitOverride()
    .showHelpAfterError()

  program
    .command('serve')
    .description('run the hold server')
    .option('-c, --config <file>', 'YAML config file (env ATCR_HOLD_* overrides it)')
    .action(async (options: { config?: string }) => serve(options.config))

  program
    .command('config')
    .description('configuration files')
    .command('init')
    .description('write a fully commented config with every option and its default')
    .argument('[file]', 'where to write it; - or nothing for stdout', '-')
    .option('-f, --force', 'overwrite an existing file')
    .action(async (file: string, options: { force?: boolean }) =>
      configInit(file, options.force ?? false),
    )

  const repo = program.command('repo').description("back up and restore the hold's repo")
  repo
    .command('export')
    .description('write the whole repo to stdout as a CAR v1 file (hold stopped or running)')
    .option('-c, --config <file>', 'YAML config file')
    .action(async (options: { config?: string }) => repoExport(options.config))
  repo
    .command('import')
    .description('verify CAR files and upsert all their records in one commit (hold stopped)')
    .argument('<files...>', 'CAR files, e.g. from repo export')
    .option('-c, --config <file>', 'YAML config file')
    .action(async (files: string[], options: { config?: string }) =>
      repoImport(files, options.config),
    )
  return program
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildCli().parseAsync(argv, { from: 'user' })
    return 0
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : 2
    }
    if (
      error instanceof ConfigError ||
      error instanceof UsageError ||
      error instanceof HoldConfigError
    ) {
      process.stderr.write(`atcr-hold: ${error.message}\n`)
      return 2
    }
    process.stderr.write(`atcr-hold: ${(error as Error).message ?? error}\n`)
    return 1
  }
}
