// One command tree behind both executables: `docker-credential-atcr` (what Docker, podman,
// skopeo and buildah call: get, store, erase, list, hidden from help) and `atcr` (what
// people type). Exit codes: 0 ok, 1 failure, 2 usage error. Only the protocol's modules
// load eagerly, so `get` starts fast; login and verify load when called.
import { hostname } from 'node:os'
import { Command, CommanderError, Option } from 'commander'
import {
  type Account,
  accountId,
  accountMatches,
  activeAccount,
  type CredentialsData,
  CredentialsFileError,
  credentialsPath,
  describeAccount,
  loadCredentials,
  updateCredentials,
} from './accounts.ts'
import {
  callerCommandLines,
  type HelperIo,
  readProcessStdin,
  runProtocolCommand,
  VERSION,
} from './protocol.ts'
import { DEFAULT_REGISTRY, insecureFromEnv, RegistryNameError, registryHost } from './registry.ts'

/** A mistake in how a command was called: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** A failure the user can act on: its message is printed as is, exit code 1. */
export class CommandError extends Error {
  override name = 'CommandError'
}

export function processIo(): HelperIo {
  return {
    env: process.env,
    readStdin: readProcessStdin,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    callerCommandLines,
  }
}

/** The registry a user command acts on: named, else ATCR_REGISTRY, else the remembered one. */
function chooseRegistry(named: string | undefined, io: HelperIo, data?: CredentialsData): string {
  return registryHost(named ?? io.env.ATCR_REGISTRY ?? data?.defaultRegistry ?? DEFAULT_REGISTRY)
}

export function buildCli(program: string, io: HelperIo, setExit: (code: number) => void): Command {
  const cli = new Command(program)
    .description(
      'ATCR on the command line: sign in to ATCR registries (device flow), act as the Docker ' +
        'credential helper, and verify images against their owners’ signed repositories',
    )
    .version(VERSION, '-v, --version')
    .showHelpAfterError()
    .configureOutput({
      writeOut: (text) => io.stdout(text),
      writeErr: (text) => io.stderr(text),
    })

  for (const [name, what] of [
    ['get', 'credentials for the server URL on stdin'],
    ['store', 'store {ServerURL, Username, Secret} from stdin'],
    ['erase', 'forget the credentials of the server URL on stdin'],
    ['list', 'every registry with its active username'],
  ] as const) {
    cli
      .command(name, { hidden: true })
      .description(`credential-helper protocol: ${what}`)
      .action(async () => setExit(await runProtocolCommand(name, { io, program })))
  }
  cli
    .command('version')
    .description('print the version')
    .action(async () => setExit(await runProtocolCommand('version', { io, program })))

  cli
    .command('login')
    .description('sign in to a registry with the device flow (approve in a browser)')
    .argument('[registry]', `registry host (default: the last one used, or ${DEFAULT_REGISTRY})`)
    .option('--insecure', 'plain HTTP to the registry (always for localhost; env ATCR_INSECURE)')
    .option('--no-browser', 'print the link only, do not open a browser')
    .action(
      async (registry: string | undefined, options: { insecure?: boolean; browser: boolean }) => {
        const path = credentialsPath(io.env)
        // Fail before the user approves anything if the file could not be written later.
        const data = await loadCredentials(path)
        const host = chooseRegistry(registry, io, data)
        const { login } = await import('./login.ts')
        await login({
          registry: registry ?? host,
          insecure: options.insecure === true || insecureFromEnv(io.env),
          openBrowser: options.browser,
          clientName: `${program} on ${hostname()}`,
          credentialsFile: path,
          io,
          program,
        })
      },
    )

  cli
    .command('logout')
    .description('forget an account (the active one unless named) on this machine')
    .argument('[account]', 'handle or DID')
    .option('-r, --registry <host>', 'the registry (default: the last one used)')
    .option('--all', 'forget every account of the registry')
    .action(async (name: string | undefined, options: { registry?: string; all?: boolean }) => {
      const path = credentialsPath(io.env)
      const removed = await updateCredentials(path, (data) => {
        const host = chooseRegistry(options.registry, io, data)
        const entry = data.registries[host]
        if (!entry || entry.accounts.length === 0) {
          throw new CommandError(`not logged in to ${host}`)
        }
        let gone: Account[]
        if (options.all) {
          gone = entry.accounts
        } else {
          const account = name
            ? entry.accounts.find((a) => accountMatches(a, name))
            : activeAccount(entry)
          if (!account) {
            throw new CommandError(
              name ? `no account ${name} on ${host}` : `no active account on ${host}; name one`,
            )
          }
          gone = [account]
        }
        entry.accounts = entry.accounts.filter((a) => !gone.includes(a))
        if (entry.accounts.length === 0) {
          delete data.registries[host]
          if (data.defaultRegistry === host) {
            const next = Object.keys(data.registries)[0]
            if (next === undefined) delete data.defaultRegistry
            else data.defaultRegistry = next
          }
        } else if (!entry.accounts.some((a) => accountId(a) === entry.active)) {
          entry.active = accountId(entry.accounts[0]!)
        }
        return { host, gone, next: data.registries[host] && activeAccount(data.registries[host]) }
      })
      for (const account of removed.gone) {
        io.stdout(`Logged out of ${removed.host}: ${describeAccount(account)}\n`)
      }
      if (removed.next) io.stdout(`Active on ${removed.host}: ${describeAccount(removed.next)}\n`)
      io.stdout('The registry still lists the device until you revoke it in its settings page.\n')
    })

  cli
    .command('status')
    .description('every registry and account on this machine; * marks the active ones')
    .action(async () => {
      const data = await loadCredentials(credentialsPath(io.env))
      const hosts = Object.keys(data.registries)
      if (hosts.length === 0) {
        io.stdout(`Not logged in. Run: ${program} login [registry]\n`)
        return
      }
      for (const host of hosts) {
        const entry = data.registries[host]!
        const active = activeAccount(entry)
        const isDefault = data.defaultRegistry === host ? ' (default)' : ''
        io.stdout(`${host}${isDefault}  ${entry.url}\n`)
        for (const account of entry.accounts) {
          const mark = account === active ? '*' : ' '
          const how = account.source === 'device' ? 'device login' : 'stored by a client login'
          io.stdout(`  ${mark} ${describeAccount(account)}  ${how}, ${account.addedAt}\n`)
        }
      }
    })

  cli
    .command('switch')
    .description('make another account active (with two accounts, the other one)')
    .argument('[account]', 'handle or DID; required with three accounts or more')
    .option('-r, --registry <host>', 'the registry (default: the last one used)')
    .action(async (name: string | undefined, options: { registry?: string }) => {
      const path = credentialsPath(io.env)
      const result = await updateCredentials(path, (data) => {
        const host = chooseRegistry(options.registry, io, data)
        const entry = data.registries[host]
        if (!entry || entry.accounts.length === 0) {
          throw new CommandError(`not logged in to ${host}`)
        }
        let next: Account | undefined
        if (name) {
          next = entry.accounts.find((a) => accountMatches(a, name))
          if (!next) throw new CommandError(`no account ${name} on ${host}`)
        } else if (entry.accounts.length === 2) {
          const current = activeAccount(entry)
          next = entry.accounts.find((a) => a !== current)
        } else if (entry.accounts.length === 1) {
          throw new CommandError(
            `only one account on ${host}: ${describeAccount(entry.accounts[0]!)}`,
          )
        } else {
          const names = entry.accounts.map((a) => `  ${describeAccount(a)}`).join('\n')
          throw new UsageError(`${host} has ${entry.accounts.length} accounts; name one:\n${names}`)
        }
        entry.active = accountId(next!)
        data.defaultRegistry = host
        return { host, account: next! }
      })
      io.stdout(`Active on ${result.host}: ${describeAccount(result.account)}\n`)
    })

  cli
    .command('configure-docker')
    .description(
      'make Docker (~/.docker/config.json) and podman, skopeo and buildah ' +
        '(containers auth.json) call this helper for a registry',
    )
    .argument('[registry]', 'registry host (default: the last one used)')
    .option(
      '--authfile <path>',
      'the containers auth file (default: $REGISTRY_AUTH_FILE or ~/.config/containers/auth.json)',
    )
    .option('--no-containers', 'leave the containers auth file alone')
    .action(
      async (registry: string | undefined, options: { authfile?: string; containers: boolean }) => {
        const data = await loadCredentials(credentialsPath(io.env)).catch((error) => {
          // The registry can be named without a usable credentials file.
          if (registry && error instanceof CredentialsFileError) return undefined
          throw error
        })
        const host = chooseRegistry(registry, io, data)
        const { configureClients } = await import('./docker-config.ts')
        const results = await configureClients({
          host,
          env: io.env,
          containers: options.containers,
          ...(options.authfile ? { authFile: options.authfile } : {}),
        })
        for (const result of results) {
          if (result.changed) {
            const backup = result.backup ? ` (backup: ${result.backup})` : ''
            io.stdout(`${result.file}: credHelpers["${host}"] = "atcr"${backup}\n`)
          } else {
            io.stdout(`${result.file}: already uses atcr for ${host}\n`)
          }
        }
      },
    )

  cli
    .command('verify')
    .description(
      "check, without trusting the registry, that the manifest it serves is the one in the owner's signed repository",
    )
    .argument('<image>', 'image reference: registry/identity/repository[:tag|@digest]')
    .option('--insecure', 'plain HTTP, and local addresses for PDS and PLC (env ATCR_INSECURE)')
    .addOption(
      new Option('--plc-url <url>', 'PLC directory')
        .env('ATCR_PLC_URL')
        .default('https://plc.directory'),
    )
    .addOption(
      new Option(
        '--handle-resolver <url>',
        'resolve handles with this service (com.atproto.identity.resolveHandle) instead of DNS',
      ).env('ATCR_HANDLE_RESOLVER'),
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (
        image: string,
        options: { insecure?: boolean; plcUrl: string; handleResolver?: string; json?: boolean },
      ) => {
        const { verifyImage, formatVerification, VerifyError } = await import('./verify.ts')
        const result = await verifyImage({
          reference: image,
          insecure: options.insecure === true || insecureFromEnv(io.env),
          plcUrl: options.plcUrl,
          ...(options.handleResolver ? { handleResolver: options.handleResolver } : {}),
          credentialsFile: credentialsPath(io.env),
        }).catch((error: unknown) => {
          if (!(error instanceof VerifyError)) throw error
          throw new CommandError(`NOT verified (${error.step}): ${error.message}`)
        })
        io.stdout(
          options.json ? `${JSON.stringify(result, null, 2)}\n` : formatVerification(result),
        )
      },
    )
  return cli
}

/** Runs the command line `argv` (without node and script); returns the exit code. */
export async function main(
  program: string,
  argv: string[],
  io: HelperIo = processIo(),
): Promise<number> {
  let code = 0
  const cli = buildCli(program, io, (value) => {
    code = value
  })
  cli.exitOverride()
  try {
    await cli.parseAsync(argv, { from: 'user' })
    return code
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2
    const usage = error instanceof UsageError || error instanceof RegistryNameError
    io.stderr(`${program}: ${(error as Error).message ?? String(error)}\n`)
    return usage ? 2 : 1
  }
}
