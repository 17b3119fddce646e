/**
 * How trusting outbound requests may be. `production` allows only https to public
 * addresses; `dev` also allows http and loopback/private addresses, for a local stack
 * (local PLC, `did:web:localhost%3A8080`, docker networks).
 */
export type IdentityMode = 'production' | 'dev'

export const IDENTITY_MODES: readonly IdentityMode[] = ['production', 'dev']

export function isIdentityMode(value: unknown): value is IdentityMode {
  return value === 'production' || value === 'dev'
}
