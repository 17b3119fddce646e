// Both database engines for store tests: SQLite (a file in a temp dir) and PostgreSQL (a
// throwaway cluster on loopback, started on first use, a fresh database per `open`).
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import {
  hasPostgres,
  makeTempDir,
  removeTempDir,
  startPostgres,
  type TestPostgres,
} from '@atcr/testkit'
import { type AppViewDatabase, openAppViewDatabase } from '../src/db/index.ts'

export interface Engine {
  name: 'sqlite' | 'postgres'
  /** Why the engine's tests are skipped (PostgreSQL not installed), else false. */
  skip: string | false
  /** A fresh, migrated database (a new URL or file each time); `reopen` opens it again. */
  open(): Promise<{
    db: AppViewDatabase
    url: string | null
    reopen: () => Promise<AppViewDatabase>
  }>
}

export interface Engines {
  engines: Engine[]
  /** Stops PostgreSQL (if started) and removes the files; call in `after`. */
  close(): Promise<void>
}

export function testEngines(options: { maxConnections?: number } = {}): Engines {
  let dir: Promise<string> | undefined
  let postgres: Promise<TestPostgres> | undefined
  let databases = 0
  const tempDir = () => {
    dir ??= makeTempDir('atcr-engines-')
    return dir
  }
  return {
    engines: [
      {
        name: 'sqlite',
        skip: false,
        async open() {
          const sqlitePath = join(await tempDir(), `${randomUUID()}.sqlite`)
          const reopen = () => openAppViewDatabase({ url: null, sqlitePath })
          return { db: await reopen(), url: null, reopen }
        },
      },
      {
        name: 'postgres',
        skip: hasPostgres() ? false : 'PostgreSQL is not installed',
        async open() {
          postgres ??= startPostgres()
          const url = await (await postgres).createDatabase(`appview_${++databases}`)
          const sqlitePath = join(await tempDir(), 'unused.sqlite')
          const reopen = () =>
            openAppViewDatabase({ url, sqlitePath, maxConnections: options.maxConnections ?? 10 })
          return { db: await reopen(), url, reopen }
        },
      },
    ],
    async close() {
      if (postgres) await (await postgres).close()
      if (dir) await removeTempDir(await dir)
    },
  }
}
