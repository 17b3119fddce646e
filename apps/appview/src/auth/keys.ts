// Where the AppView keeps its own secrets, under `<data_dir>/auth/` (the original's layout
// for the token key). Loaded with @atcr/core/oauth's key files.
import { join } from 'node:path'

export function authKeyPaths(dataDir: string): {
  tokenKey: string
  sessionKey: string
  oauthClientKey: string
} {
  return {
    tokenKey: join(dataDir, 'auth', 'private-key.pem'),
    sessionKey: join(dataDir, 'auth', 'session.key'),
    oauthClientKey: join(dataDir, 'auth', 'oauth-client-key.pem'),
  }
}
