// A service database on either engine: SQLite (the embedded default, see ../sqlite) or
// PostgreSQL (for several instances sharing one database). Both are kysely with the same
// numbered migrations; the few places where the engines differ ask `engineOf`.
import { Kysely, PostgresAdapter, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { type Migration, migrate, openSqlite, type SqliteDatabase } from '../sqlite/index.ts'

export type { Migration }

export type DatabaseEngine = 'sqlite' | 'postgres'

export interface PostgresDatabase<Schema> {
  engine: 'postgres'
  db: Kysely<Schema>
  close(): Promise<void>
}

/** What store modules are given: a kysely instance and the engine behind it. */
export type ServiceDatabase<Schema> = SqliteDatabase<Schema> | PostgresDatabase<Schema>

export interface OpenDatabaseOptions {
  /** `postgres://...` or `postgresql://...`: PostgreSQL; null: SQLite at `sqlitePath`. */
  url: string | null
  sqlitePath: string
  /** Most connections to PostgreSQL at once. */
  maxConnections?: number
}

/** Opens the configured engine and runs pending migrations. */
export async function openDatabase<Schema>(
  options: OpenDatabaseOptions,
  migrations: Record<string, Migration>,
): Promise<ServiceDatabase<Schema>> {
  if (options.url === null) return openSqlite<Schema>(options.sqlitePath, migrations)
  return openPostgres<Schema>(options.url, migrations, options.maxConnections)
}

// bigint (int8) columns hold Unix milliseconds and byte counts, all far below 2^53: read
// them as numbers, as SQLite gives them, rather than pg's default strings.
const INT8_OID = 20
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url)
}

/** Connects to PostgreSQL at `url` and runs pending migrations (one instance at a time). */
export async function openPostgres<Schema>(
  url: string,
  migrations: Record<string, Migration>,
  maxConnections = 10,
): Promise<PostgresDatabase<Schema>> {
  if (!isPostgresUrl(url)) throw new Error('a database url must start with postgres://')
  const pool = new pg.Pool({ connectionString: url, max: maxConnections, types })
  // A client that loses its server (a crash, a restart) emits 'error', and that event
  // unheard ends the process. The pool listens only while a client is idle; one checked
  // out between two queries (inside a transaction, under a lock) needs its own listener.
  // Its queries fail on their own, and the pool drops it when it is released.
  pool.on('error', () => {})
  pool.on('connect', (client) => client.on('error', () => {}))
  const db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) })
  try {
    // Kysely's migrator takes a PostgreSQL advisory lock: instances starting together
    // migrate one after the other.
    await migrate(db, migrations)
  } catch (err) {
    await db.destroy()
    throw err
  }
  return { engine: 'postgres', db, close: () => db.destroy() }
}

/** The engine behind a kysely instance (for migrations, which get only the instance). */
export function engineOf(db: Kysely<unknown>): DatabaseEngine {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
}

/** The column type of byte strings: SQLite's blob, PostgreSQL's bytea. */
export function bytesType(db: Kysely<unknown>): 'blob' | 'bytea' {
  return engineOf(db) === 'postgres' ? 'bytea' : 'blob'
}

/** Whether an insert failed on a unique or primary key constraint (either engine). */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const code = (error as { code?: unknown }).code
  // PostgreSQL: SQLSTATE 23505; better-sqlite3: SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY.
  return (
    code === '23505' ||
    code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  )
}

/** Runs `fn` while holding the lock `name`; calls for one name run one after the other. */
export type NamedLock = <T>(name: string, fn: () => T | PromiseLike<T>) => Promise<T>

/** A lock within this process: calls for one name are chained. */
export function processLock(): NamedLock {
  const tails = new Map<string, Promise<unknown>>()
  return async <T>(name: string, fn: () => T | PromiseLike<T>): Promise<T> => {
    const previous = tails.get(name) ?? Promise.resolve()
    const run = previous.then(fn, fn)
    const tail = run.then(
      () => {},
      () => {},
    )
    tails.set(name, tail)
    try {
      return await run
    } finally {
      if (tails.get(name) === tail) tails.delete(name)
    }
  }
}

/**
 * A lock shared by every process on the database. On PostgreSQL: a session advisory lock
 * (keys `space` and the name's hash) taken on a connection of its own, held while `fn`
 * runs and released by the server if this process dies; calls in one process queue
 * first, so a name ties up one connection at most. On SQLite: within this process only
 * (instances sharing a SQLite file are not coordinated).
 */
export function databaseLock<Schema>(database: ServiceDatabase<Schema>, space: number): NamedLock {
  const local = processLock()
  if (database.engine === 'sqlite') return local
  const db = database.db as unknown as Kysely<unknown>
  return <T>(name: string, fn: () => T | PromiseLike<T>) =>
    local(name, () =>
      db.connection().execute(async (connection) => {
        await sql`SELECT pg_advisory_lock(${space}, hashtext(${name}))`.execute(connection)
        try {
          return await fn()
        } finally {
          await sql`SELECT pg_advisory_unlock(${space}, hashtext(${name}))`.execute(connection)
        }
      }),
    )
}

// Node's socket errors, and PostgreSQL's SQLSTATEs for a server going away or not yet up
// (class 08: connection exceptions; 57P01-57P03: shutdown, crash, starting up).
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT'])
const UNREACHABLE_SQLSTATES = /^(08...|57P0[123])$/

/**
 * Whether an error (or its cause) says the database server cannot be reached right now,
 * rather than that a query was wrong: the request may be retried once it is back.
 */
export function isDatabaseUnreachable(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code
    if (
      typeof code === 'string' &&
      (UNREACHABLE_CODES.has(code) || UNREACHABLE_SQLSTATES.test(code))
    )
      return true
    // pg's own words when the server closes the connection under a query, or before one
    // on a client that lost it (a transaction's ROLLBACK then fails with these).
    if (/^(Connection terminated|Client has encountered a connection error)/.test(current.message))
      return true
    if (current instanceof AggregateError && current.errors.some(isDatabaseUnreachable)) return true
    current = current.cause
  }
  return false
}
