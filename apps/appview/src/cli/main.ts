// atcr-appview: run the registry, write its config.
import { once } from 'node:events'
import { addConfigInitCommand, loadConfigFile, runCli } from '@atcr/core/cli'
import { Command } from 'commander'
import { appviewConfig } from '../config.ts'
import { AppView } from '../index.ts'

export function buildCli(): Command {
  const program = new Command('atcr-appview')
    .description('ATCR AppView: the OCI registry API and web UI on the AT Protocol')
    .showHelpAfterError()
  program
    .command('serve')
    .description('run the AppView server')
    .option('-c, --config <file>', 'YAML config file (env ATCR_APPVIEW_* overrides it)')
    .action(async (options: { config?: string }) => {
      const appview = await AppView.create(await loadConfigFile(appviewConfig, options.config))
      await appview.start()
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')])
      await appview.destroy()
    })
  addConfigInitCommand(program, appviewConfig)
  return program
}

export function main(argv: string[]): Promise<number> {
  return runCli(buildCli(), argv)
}
