// The AppView database's tables, one interface each; each feature's migration creates its
// own and adds them here.

/**
 * A user's PDS session from their last token exchange (`com.atproto.server.createSession`),
 * kept sealed: `sealed` is AES-256-GCM over the session JSON (tokens, handle, PDS endpoint).
 */
export interface PdsSessionTable {
  did: string
  /** Changes on every new login, so a stale in-memory agent cannot overwrite a newer session. */
  session_id: string
  sealed: Uint8Array
  /** When the user's io.atcr.sailor.profile was last found or created; null: not yet. */
  profile_checked_at: string | null
  created_at: string
  updated_at: string
}

export type AppViewSchema = {
  pds_session: PdsSessionTable
}
