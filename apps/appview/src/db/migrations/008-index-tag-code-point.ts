import { engineOf } from '@atcr/core/database'
import { type Kysely, sql } from 'kysely'

/**
 * tags/list pages in code point order (OCI's), which on PostgreSQL is `collate "C"`, not
 * the database collation index_tag's primary key is built in: without an index in that
 * order every page (`?n=&last=`) read and sorted all the repository's tags. SQLite
 * compares text by code point already, so its primary key serves.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (engineOf(db) !== 'postgres') return
  await sql`create index index_tag_code_point on index_tag (did, repository, tag collate "C")`.execute(
    db,
  )
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (engineOf(db) !== 'postgres') return
  await sql`drop index if exists index_tag_code_point`.execute(db)
}
