import { cidForRawBytes } from '@atproto/lex-data'
import type { Kysely } from 'kysely'
import type { HoldSchema } from '../../db/schema.ts'

/** The JSON form of an atproto blob reference, as records embed it. */
export interface BlobRefJson {
  $type: 'blob'
  ref: { $link: string }
  mimeType: string
  size: number
}

export interface StoredBlob {
  cid: string
  mimeType: string
  size: number
  content: Uint8Array
}

/** Small ordinary atproto blobs (avatars and the like) kept in SQLite, addressed by CID. */
export class BlobStore {
  readonly db: Kysely<HoldSchema>

  constructor(db: Kysely<HoldSchema>) {
    this.db = db
  }

  /** Stores bytes under their raw CID (idempotent) and returns the blob reference. */
  async put(content: Uint8Array, mimeType: string): Promise<BlobRefJson> {
    const cid = (await cidForRawBytes(content)).toString()
    await this.db
      .insertInto('blob')
      .values({
        cid,
        mime_type: mimeType,
        size: content.byteLength,
        content,
        created_at: new Date().toISOString(),
      })
      .onConflict((oc) => oc.column('cid').doNothing())
      .execute()
    return { $type: 'blob', ref: { $link: cid }, mimeType, size: content.byteLength }
  }

  async get(cid: string): Promise<StoredBlob | null> {
    const row = await this.db
      .selectFrom('blob')
      .select(['cid', 'mime_type', 'size', 'content'])
      .where('cid', '=', cid)
      .executeTakeFirst()
    if (!row) return null
    return { cid: row.cid, mimeType: row.mime_type, size: row.size, content: row.content }
  }
}
