// atcr-hold: run a hold, write its config, back up and restore its repo, collect garbage.
import { addConfigInitCommand, runCli } from '@atcr/core/cli'
import { Command } from 'commander'
import pkg from '../../package.json' with { type: 'json' }
import { holdConfig } from '../config.ts'
import { gcCommand } from './gc.ts'
import { type RepoImportOptions, repoExport, repoImport } from './repo.ts'
import { serve } from './serve.ts'

export function buildCli(): Command {
  const program = new Command('atcr-hold')
    .description('ATCR hold: blob storage with an embedded AT Protocol PDS')
    .version(pkg.version, '-v, --version')
    .showHelpAfterError()

  program
    .command('serve')
    .description('run the hold server')
    .option('-c, --config <file>', 'YAML config file (env ATCR_HOLD_* overrides it)')
    .action((options: { config?: string }) => serve(options.config))

  addConfigInitCommand(program, holdConfig)

  const repo = program.command('repo').description("back up and restore the hold's repo")
  repo
    .command('export')
    .description('write the whole repo to stdout as a CAR v1 file (hold stopped or running)')
    .option('-c, --config <file>', 'YAML config file')
    .action((options: { config?: string }) => repoExport(options.config))
  repo
    .command('import')
    .description('verify CAR files and upsert all their records in one commit (hold stopped)')
    .argument('<files...>', 'CAR files, e.g. from repo export')
    .option('-c, --config <file>', 'YAML config file')
    .option(
      '--did-document <file...>',
      "DID document (JSON) of a CAR's repo, when its DID cannot be resolved (an old host that is gone)",
    )
    .option(
      '--take-access-records',
      'also take captain and crew records from repos of other DIDs (left out by default)',
    )
    .action((files: string[], options: RepoImportOptions) => repoImport(files, options))

  program
    .command('gc')
    .description(
      'delete blobs no layer record references, older than gc.grace_period (hold stopped or running)',
    )
    .option('-c, --config <file>', 'YAML config file')
    .option('-n, --dry-run', 'list what would be deleted and the bytes reclaimed; delete nothing')
    .option('--json', 'print the report as JSON')
    .action((options: { config?: string; dryRun?: boolean; json?: boolean }) => gcCommand(options))
  return program
}

export function main(argv: string[]): Promise<number> {
  return runCli(buildCli(), argv)
}
