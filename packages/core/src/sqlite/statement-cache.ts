// A better-sqlite3 connection whose `prepare` hands back the statement it prepared before
// for the same SQL. Kysely's SqliteDialect prepares every query it runs; preparing was
// as much CPU as running the query (a quarter of the hold's busy time in a push of small
// layers). Reusing a statement is safe here: kysely runs it to completion (`all` or `run`)
// before the next query on the one connection, and SQLite re-prepares a statement itself
// when the schema changes under it.
import type Database from 'better-sqlite3'

/** Distinct SQL texts kept: queries are built from a fixed set of shapes, bar IN lists. */
const MAX_STATEMENTS = 500

export interface PreparingConnection {
  prepare(sql: string): Database.Statement
  close(): void
}

export function withStatementCache(
  sqlite: Database.Database,
  max = MAX_STATEMENTS,
): PreparingConnection {
  const statements = new Map<string, Database.Statement>()
  return {
    prepare(sql) {
      let statement = statements.get(sql)
      if (statement) {
        // Most recently used last: the first key is the one to drop.
        statements.delete(sql)
      } else {
        statement = sqlite.prepare(sql)
        if (statements.size >= max) statements.delete(statements.keys().next().value as string)
      }
      statements.set(sql, statement)
      return statement
    },
    close() {
      statements.clear()
      sqlite.close()
    },
  }
}
