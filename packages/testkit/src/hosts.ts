// Names that resolve for some commands only, as a hosts file would say, without editing
// the machine's /etc/hosts: each command runs in its own mount namespace (`unshare -m`,
// needs root) where a copy of /etc/hosts with the extra names is bound over it. Node
// (getaddrinfo) and Go programs (skopeo) both read it. For names that must look public,
// e.g. a did:web resolved over https or an https OAuth client, yet point at loopback.
import { spawnSync } from 'node:child_process'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface PrivateHosts {
  /** The hosts file bound over /etc/hosts. */
  file: string
  /** `command args` to run so that it sees the names. */
  command(command: string, args: string[]): [string, string[]]
  /** An executable in `dir` that runs `bin` (with its arguments) seeing the names. */
  wrap(bin: string, name: string): Promise<string>
}

/** Whether this machine lets us give a command its own /etc/hosts (root, mount namespaces). */
export function canUsePrivateHosts(): boolean {
  return spawnSync('unshare', ['-m', 'true'], { stdio: 'ignore' }).status === 0
}

const BIND_AND_RUN = 'mount --bind "$0" /etc/hosts && exec "$@"'

/** `names` (name → address) added to /etc/hosts for the commands run through the result. */
export async function privateHosts(
  dir: string,
  names: Record<string, string>,
): Promise<PrivateHosts> {
  const file = join(dir, 'hosts')
  const system = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1 localhost\n')
  const extra = Object.entries(names).map(([name, address]) => `${address} ${name}`)
  await writeFile(file, `${system.trimEnd()}\n${extra.join('\n')}\n`)
  const command = (cmd: string, args: string[]): [string, string[]] => [
    'unshare',
    ['-m', 'sh', '-c', BIND_AND_RUN, file, cmd, ...args],
  ]
  return {
    file,
    command,
    wrap: async (bin, name) => {
      const wrapper = join(dir, name)
      const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`
      await writeFile(
        wrapper,
        `#!/bin/sh\nexec unshare -m sh -c ${quote(BIND_AND_RUN)} ${quote(file)} ${quote(bin)} "$@"\n`,
      )
      await chmod(wrapper, 0o755)
      return wrapper
    },
  }
}
