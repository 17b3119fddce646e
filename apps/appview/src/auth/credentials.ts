// Who is asking for a registry token: the username (a handle or a DID) and password of HTTP
// Basic auth or of the OAuth2 password grant, checked against the account's own PDS.
import {
  IdentityError,
  type IdentityResolver,
  IdentityUnavailableError,
  SsrfBlockedError,
} from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import { OciError } from '@atcr/core/oci'
import { DEVICE_SECRET_PREFIX } from './devices.ts'
import { ensureSailorProfile } from './profile.ts'
import type { SessionStore } from './session-store.ts'
import {
  AccountPasswordError,
  PdsLoginRefusedError,
  PdsRateLimitedError,
  type PdsSessions,
  PdsUnavailableError,
} from './sessions.ts'
import type { VerifiedLogin, VerifiedLogins } from './verified-logins.ts'

export interface Credentials {
  username: string
  password: string
}

/**
 * Device secrets, issued to the credential helper by the device flow (devices.ts), are
 * checked before app passwords. Answers whether `secret` is a live device secret of
 * `did`; such a login uses the session the user approved the device with, so no PDS
 * session is created for it here.
 */
export interface DeviceSecretVerifier {
  verify(did: string, secret: string): Promise<boolean>
}

/** Reads `Authorization: Basic base64(username:password)`; null when absent or malformed. */
export function parseBasicAuthorization(header: string | undefined): Credentials | null {
  const match = header === undefined ? null : /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header)
  if (!match) return null
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8')
  // A DID username holds colons itself (RFC 7617 forbids them, docker sends them anyway):
  // the password starts after the DID's method-specific id.
  const did = DID_USERNAME.exec(decoded)
  if (did) return { username: did[1]!, password: did[2]! }
  const colon = decoded.indexOf(':')
  if (colon <= 0) return null
  return { username: decoded.slice(0, colon).trim(), password: decoded.slice(colon + 1) }
}

const DID_USERNAME = /^(did:[a-z]+:[a-zA-Z0-9._%-]+):(.*)$/s

export interface CredentialCheckerOptions {
  identity: IdentityResolver
  sessions: PdsSessions
  store: SessionStore
  /** App-password sign-ins the PDS accepted lately (see verified-logins.ts). */
  verified: VerifiedLogins
  deviceSecrets: DeviceSecretVerifier
  defaultHoldDid: string | null
  logger: Logger
  /** The 401 every refused login answers with (it carries the Basic challenge). */
  unauthorized: (message: string) => OciError
}

/**
 * Checks credentials and returns the caller's DID. An app password is exchanged for a PDS
 * session (com.atproto.server.createSession), which is kept for the registry's later
 * writes; on the first such login the user's io.atcr.sailor.profile is made sure of. The
 * same username and password again within seconds, while that session is stored, is let
 * in without asking the PDS; later, the PDS is asked to refresh that session instead of
 * checking the password again (verified-logins.ts). Concurrent checks of the same pair
 * share one.
 */
export class CredentialChecker {
  private readonly options: CredentialCheckerOptions
  private readonly pending = new Map<string, Promise<string>>()

  constructor(options: CredentialCheckerOptions) {
    this.options = options
  }

  async check(credentials: Credentials): Promise<string> {
    const { sessions, verified, unauthorized } = this.options
    const { username, password } = credentials
    if (username === '' || password === '') throw unauthorized(refusedMessage(username))
    const key = verified.keyOf(username, password)
    let known = verified.find(key)
    if (known?.fresh) {
      if (await sessions.hasSession(known.did)) return known.did
      verified.forget(key)
      known = undefined
    }
    const pending = this.pending.get(key)
    if (pending) return pending
    const checking = this.recheck(credentials, key, known)
    this.pending.set(key, checking)
    try {
      return await checking
    } finally {
      this.pending.delete(key)
    }
  }

  /** A sign-in remembered but not fresh is confirmed by refreshing its session. */
  private async recheck(
    credentials: Credentials,
    key: string,
    known: VerifiedLogin | undefined,
  ): Promise<string> {
    const { sessions, verified } = this.options
    if (known) {
      if (await sessions.reconfirm(known.did, known.sessionId)) {
        verified.confirmed(key)
        return known.did
      }
      verified.forget(key)
    }
    return this.checkAtPds(credentials, key)
  }

  private async checkAtPds(credentials: Credentials, key: string): Promise<string> {
    const { identity, sessions, verified, deviceSecrets, unauthorized } = this.options
    const { username, password } = credentials
    const refused = refusedMessage(username)

    let resolved: { did: string; pdsEndpoint: string }
    try {
      resolved = await identity.resolveIdentity(username)
    } catch (error) {
      // A DID whose directory is down is not the user's fault; an unknown handle is.
      if (error instanceof IdentityUnavailableError && username.startsWith('did:')) {
        throw new OciError('UNAVAILABLE', {
          message: `could not resolve ${username}; try again later`,
          cause: error,
        })
      }
      if (error instanceof IdentityError || error instanceof SsrfBlockedError) {
        throw unauthorized(refused)
      }
      throw error
    }

    if (await deviceSecrets.verify(resolved.did, password)) return resolved.did
    // A device secret that is not (or no longer) valid is never sent to the PDS.
    if (password.startsWith(DEVICE_SECRET_PREFIX)) {
      throw unauthorized(
        `the device secret of ${JSON.stringify(username)} was revoked or is unknown: sign in again (docker-credential-atcr login)`,
      )
    }

    let login: Awaited<ReturnType<PdsSessions['login']>>
    try {
      login = await sessions.login(resolved, password)
    } catch (error) {
      if (error instanceof PdsLoginRefusedError) throw unauthorized(refused)
      if (error instanceof AccountPasswordError) throw unauthorized(error.message)
      if (error instanceof PdsRateLimitedError) {
        throw new OciError('TOOMANYREQUESTS', { message: error.message, cause: error })
      }
      if (error instanceof PdsUnavailableError) {
        throw new OciError('UNAVAILABLE', { message: error.message, cause: error })
      }
      throw error
    }
    verified.remember(key, resolved.did, login.sessionId, login.session.refreshJwt)
    await this.ensureProfileOnce(resolved.did, login.agent)
    return resolved.did
  }

  private async ensureProfileOnce(
    did: string,
    agent: Parameters<typeof ensureSailorProfile>[0],
  ): Promise<void> {
    const { store, defaultHoldDid, logger } = this.options
    try {
      if (await store.isProfileChecked(did)) return
      const outcome = await ensureSailorProfile(agent, did, defaultHoldDid)
      await store.markProfileChecked(did)
      if (outcome === 'created') logger.info({ did }, 'created io.atcr.sailor.profile')
    } catch (error) {
      // The token is still good; the next login tries again.
      logger.warn({ did, err: error }, 'could not make sure of the sailor profile')
    }
  }
}

function refusedMessage(username: string): string {
  return `sign-in as ${JSON.stringify(username)} failed: check the username (your handle or DID) and the app password`
}
