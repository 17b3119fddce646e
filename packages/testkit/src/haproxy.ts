// A real HAProxy (Debian's `haproxy`, see scripts/apt-deps.sh) on loopback, balancing
// round-robin over HTTP backends: every request is balanced on its own, health-checked
// servers leave the rotation within a second of dying, and a request whose connection is
// refused is sent to another server. Each answer names the server in `x-served-by`, and
// each request is logged as `SERVER METHOD URI STATUS`.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { hasCommand } from './oci-clients.ts'
import { freePort, LOOPBACK } from './ports.ts'
import { makeTempDir, removeTempDir } from './temp-dir.ts'

export interface HaproxyBackend {
  /** The server's name in logs and `x-served-by`. */
  name: string
  port: number
}

export interface StartHaproxyOptions {
  backends: HaproxyBackend[]
  /** The port to listen on (default: a free one). */
  port?: number
  /** Health check: GET this path; any answer below 500 is healthy. */
  checkPath?: string
}

export interface ServedRequest {
  server: string
  method: string
  uri: string
  status: number
}

export interface TestHaproxy {
  url: string
  port: number
  /** Requests answered so far, in order (logged when each ends). */
  requests(): ServedRequest[]
  output(): string
  close(): Promise<void>
}

export function hasHaproxy(): boolean {
  return hasCommand('haproxy')
}

const OUTPUT_LIMIT = 1024 * 1024

export async function startHaproxy(options: StartHaproxyOptions): Promise<TestHaproxy> {
  const port = options.port ?? (await freePort())
  const dir = await makeTempDir('atcr-haproxy-')
  const servers = options.backends
    .map(
      (b) =>
        `  server ${b.name} ${LOOPBACK}:${b.port} check inter 250ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down`,
    )
    .join('\n')
  const config = `global
  log stdout format raw local0
  maxconn 512

defaults
  mode http
  log global
  log-format "served %s %HM %HU %ST"
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  timeout http-request 120s
  retries 3
  option redispatch 1

frontend registry
  bind ${LOOPBACK}:${port}
  default_backend appviews

backend appviews
  balance roundrobin
  option httpchk GET ${options.checkPath ?? '/'}
  http-check expect rstatus ^[1-4]
  http-response set-header x-served-by %[srv_name]
${servers}
`
  const file = join(dir, 'haproxy.cfg')
  await writeFile(file, config)
  let output = ''
  const child: ChildProcess = spawn('haproxy', ['-db', '-f', file], {
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
  const url = `http://${LOOPBACK}:${port}`
  try {
    const deadline = Date.now() + 10_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`haproxy exited:\n${output}`)
      const answer = await fetch(`${url}${options.checkPath ?? '/'}`).catch(() => null)
      await answer?.body?.cancel()
      if (answer?.headers.has('x-served-by')) break
      if (Date.now() > deadline) throw new Error(`haproxy did not serve in 10 s:\n${output}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  } catch (error) {
    await close()
    throw error
  }
  return {
    url,
    port,
    output: () => output,
    requests: () => {
      const served: ServedRequest[] = []
      for (const line of output.split('\n')) {
        const match = /^served (\S+) (\S+) (\S+) (\d+)/.exec(line)
        if (match) {
          served.push({
            server: match[1]!,
            method: match[2]!,
            uri: match[3]!,
            status: Number(match[4]),
          })
        }
      }
      return served
    },
    close,
  }
}
