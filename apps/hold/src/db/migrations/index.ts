import type { Migration } from 'kysely/migration'
import * as m001 from './001-repo.ts'
import * as m002 from './002-blob.ts'
import * as m003 from './003-uploads.ts'
import * as m004 from './004-record-fields.ts'
import * as m005 from './005-upload-digest-optional.ts'
import * as m006 from './006-record-blob.ts'
import * as m007 from './007-identity-announced.ts'
import * as m008 from './008-admin-sessions.ts'
import * as m009 from './009-upload-parts.ts'
import * as m010 from './010-crew-requests.ts'
import * as m011 from './011-upload-blobs.ts'

/**
 * Every migration, run in the order of their names at open and recorded in the
 * `kysely_migration` table. To add one: write `NNN-name.ts` exporting `up` (and `down`),
 * and list it here with the next number.
 */
export const migrations: Record<string, Migration> = {
  '001-repo': m001,
  '002-blob': m002,
  '003-uploads': m003,
  '004-record-fields': m004,
  '005-upload-digest-optional': m005,
  '006-record-blob': m006,
  '007-identity-announced': m007,
  '008-admin-sessions': m008,
  '009-upload-parts': m009,
  '010-crew-requests': m010,
  '011-upload-blobs': m011,
}
