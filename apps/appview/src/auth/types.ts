// What the registry needs from authentication: who is calling and what their registry
// token allows, and the user's own PDS session (for writing records and minting service
// tokens for holds). Implemented in this folder; used by registry/.

import type { OciError, TokenScope } from '@atcr/core/oci'
import type { Agent } from '@atproto/lex-client'
import type { FastifyRequest } from 'fastify'

export interface Caller {
  /** The authenticated DID, or null for an anonymous caller. */
  did: string | null
  /** What the caller's registry token grants (`repository:<name>:pull,push`...). */
  access: TokenScope[]
}

export interface RegistryAuth {
  /**
   * The caller of a /v2 request from its `Authorization: Bearer <registry token>`. No
   * token: an anonymous caller with no access. A forged, expired or otherwise invalid
   * token: throws OciError UNAUTHORIZED carrying the Bearer challenge.
   */
  authenticate(request: FastifyRequest): Promise<Caller>
  /** UNAUTHORIZED (401) with the `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge. */
  challenge(scope?: TokenScope[], error?: 'invalid_token' | 'insufficient_scope'): OciError
}

export interface UserSessions {
  /**
   * An agent on the user's PDS (calls go through a lex-client `Client` over it), logged in
   * with the session saved when the user authenticated (tokens kept encrypted at rest,
   * refreshed before they expire). Throws NoSessionError when the AppView holds no usable
   * session for that DID.
   */
  agentFor(did: string): Promise<Agent>
  /**
   * A service-auth JWT minted by the user's PDS (`aud` = a hold DID, `lxm` = the method),
   * cached until shortly before it expires.
   */
  serviceToken(did: string, aud: string, lxm: string): Promise<string>
}

export class NoSessionError extends Error {
  override name = 'NoSessionError'
  readonly did: string
  constructor(did: string) {
    super(`no PDS session for ${did}: log in again (docker login)`)
    this.did = did
  }
}
