// A throwaway PostgreSQL cluster on loopback (Debian's `postgresql` package, see
// scripts/apt-deps.sh): initdb into a temp dir, start on a free port, remove on close.
// initdb refuses to run as root, so as root the cluster runs as the `postgres` user.
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort, LOOPBACK } from './ports.ts'
import { makeTempDir, removeTempDir } from './temp-dir.ts'

const execFileAsync = promisify(execFile)
const PG_ROOT = '/usr/lib/postgresql'

export interface TestPostgres {
  port: number
  /** `postgres://postgres@127.0.0.1:PORT/postgres`. */
  url: string
  /** Creates an empty database; its URL. */
  createDatabase(name: string): Promise<string>
  /** Runs SQL in a database (default `postgres`) through psql; its output (unaligned, tuples only). */
  query(sql: string, database?: string): Promise<string>
  /** Stops the server at once, as a crash would (its files stay): a fault for tests. */
  crash(): Promise<void>
  /** Starts it again after `crash`, on the same port and data. */
  restart(): Promise<void>
  /** Stops the server and removes its files. */
  close(): Promise<void>
}

/** The newest installed PostgreSQL's bin directory, or null when none is. */
export function postgresBinDir(): string | null {
  if (!existsSync(PG_ROOT)) return null
  const versions = readdirSync(PG_ROOT)
    .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions[0] ? join(PG_ROOT, versions[0], 'bin') : null
}

export function hasPostgres(): boolean {
  return postgresBinDir() !== null
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir()
  if (!bin) throw new Error('PostgreSQL is not installed (apt-get install postgresql)')
  const asRoot = process.getuid?.() === 0
  const dir = await makeTempDir('atcr-pg-')
  const data = join(dir, 'data')
  const user = asRoot ? osUser('postgres') : null
  if (user) await chown(dir, user.uid, user.gid)
  // As root, the server binaries run as the postgres user.
  const command = (file: string, args: string[]): [string, string[]] =>
    asRoot
      ? ['runuser', ['-u', 'postgres', '--', join(bin, file), ...args]]
      : [join(bin, file), args]
  const exec = async (file: string, args: string[]) => {
    const [cmd, argv] = command(file, args)
    return execFileAsync(cmd, argv, { cwd: dir, maxBuffer: 16 * 1024 * 1024 })
  }
  const port = await freePort()
  let started = false
  // Durability is worth nothing in a throwaway cluster; speed is.
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    `-c listen_addresses=${LOOPBACK}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=200',
  ].join(' ')
  const start = async () => {
    await exec('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', 'start'])
    started = true
  }
  const stopNow = () => {
    if (!started) return
    started = false
    const [cmd, argv] = command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
    spawnSync(cmd, argv, { stdio: 'ignore' })
  }
  // A test process that dies without closing must not leave a server behind.
  process.once('exit', stopNow)
  try {
    await exec('initdb', [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ])
    await start()
  } catch (error) {
    stopNow()
    process.removeListener('exit', stopNow)
    await removeTempDir(dir)
    throw error
  }
  const urlOf = (database: string) => `postgres://postgres@${LOOPBACK}:${port}/${database}`
  const query = async (sql: string, database = 'postgres') => {
    const { stdout } = await execFileAsync(
      join(bin, 'psql'),
      ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', urlOf(database), '-c', sql],
      { maxBuffer: 16 * 1024 * 1024 },
    )
    return stdout.trim()
  }
  return {
    port,
    url: urlOf('postgres'),
    query,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`)
      await query(`CREATE DATABASE ${name}`)
      return urlOf(name)
    },
    async crash() {
      started = false
      await exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop'])
    },
    restart: start,
    async close() {
      if (started) {
        started = false
        await exec('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => {})
      }
      process.removeListener('exit', stopNow)
      await removeTempDir(dir)
    },
  }
}

function osUser(name: string): { uid: number; gid: number } {
  const uid = Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim())
  const gid = Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim())
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0) {
    throw new Error(`no ${name} user (the postgresql package creates it)`)
  }
  return { uid, gid }
}
