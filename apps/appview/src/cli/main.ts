// atcr-appview: run the registry, write its config.
import { addConfigInitCommand, loadConfigFile, runCli } from '@atcr/core/cli'
import { untilStopRequested } from '@atcr/core/lifecycle'
import { Command } from 'commander'
import pkg from '../../package.json' with { type: 'json' }
import { appviewConfig } from '../config.ts'
import { AppView } from '../index.ts'

export function buildCli(): Command {
  const program = new Command('atcr-appview')
    .description('ATCR AppView: the OCI registry API and web UI on the AT Protocol')
    .version(pkg.version, '-v, --version')
    .showHelpAfterError()
  program
    .command('serve')
    .description('run the AppView server')
    .option('-c, --config <file>', 'YAML config file (env ATCR_APPVIEW_* overrides it)')
    .action(async (options: { config?: string }) => {
      const appview = await AppView.create(await loadConfigFile(appviewConfig, options.config))
      await appview.start()
      await untilStopRequested()
      await appview.destroy()
    })
  addConfigInitCommand(program, appviewConfig)
  return program
}

export function main(argv: string[]): Promise<number> {
  return runCli(buildCli(), argv)
}
