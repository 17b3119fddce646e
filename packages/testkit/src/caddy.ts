// A real Caddy (Debian's `caddy`, see scripts/apt-deps.sh) on loopback, serving a
// Caddyfile's site blocks with TLS from its own local CA (`local_certs`), so clients given
// that CA's root certificate talk to it as they would to a public site. Everything Caddy
// keeps (CA, certificates) lives in a temp dir; nothing is installed in the system's trust.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { access, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { hasCommand } from './oci-clients.ts'
import { freePort, LOOPBACK } from './ports.ts'
import { makeTempDir, removeTempDir } from './temp-dir.ts'

export interface TestCaddy {
  /** Caddy's local CA root certificate (PEM): what clients must trust. */
  rootCertificate: string
  output(): string
  close(): Promise<void>
}

export function hasCaddy(): boolean {
  return hasCommand('caddy')
}

const OUTPUT_LIMIT = 1024 * 1024
const START_TIMEOUT_MS = 30_000

/**
 * Runs Caddy with `sites` (Caddyfile site blocks, each on an explicit loopback port) under
 * global options that keep it local: no admin endpoint, certificates from its own CA,
 * every listener on 127.0.0.1 and no port 80/443. Resolves once every port in `ports`
 * accepts connections.
 */
export async function startCaddy(options: { sites: string; ports: number[] }): Promise<TestCaddy> {
  const dir = await makeTempDir('atcr-caddy-')
  const data = join(dir, 'data')
  const caddyfile = `{
	admin off
	local_certs
	skip_install_trust
	storage file_system ${data}
	default_bind ${LOOPBACK}
	http_port ${await freePort()}
	https_port ${await freePort()}
	auto_https disable_redirects
}

${options.sites}
`
  const file = join(dir, 'Caddyfile')
  await writeFile(file, caddyfile)
  let output = ''
  const child: ChildProcess = spawn('caddy', ['run', '--adapter', 'caddyfile', '--config', file], {
    cwd: dir,
    // Caddy's own files (autosave, config dir) stay in the temp dir too.
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: data, XDG_CONFIG_HOME: join(dir, 'config') },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = once(child, 'exit')
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited.catch(() => {})
    }
    await removeTempDir(dir)
  }
  const rootCertificate = join(data, 'pki', 'authorities', 'local', 'root.crt')
  try {
    const deadline = Date.now() + START_TIMEOUT_MS
    const ready = async () =>
      (await access(rootCertificate).then(
        () => true,
        () => false,
      )) && (await Promise.all(options.ports.map(accepts))).every(Boolean)
    while (!(await ready())) {
      if (child.exitCode !== null) throw new Error(`caddy exited:\n${output}`)
      if (Date.now() > deadline) throw new Error(`caddy did not start in 30 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } catch (error) {
    await close()
    throw error
  }
  return { rootCertificate, output: () => output, close }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, LOOPBACK)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
