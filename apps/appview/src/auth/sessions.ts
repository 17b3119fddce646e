// The users' PDS sessions in use: logging in with an app password, sessions resumed from the
// sealed store (refreshed before their access token runs out, one refresh per DID at a
// time, refreshed tokens sealed again), and service tokens minted by the user's PDS.
import type { CacheCounter, GuardedFetch } from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import {
  type Agent,
  Client,
  type DidString,
  type NsidString,
  XrpcResponseError,
} from '@atproto/lex-client'
import {
  extractPdsEndpoint,
  LexAuthFactorError,
  PasswordSession,
  type PasswordSessionOptions,
  type RefreshFailure,
  type SessionData,
} from '@atproto/lex-password-session'
import { decodeJwt } from 'jose'
import { getServiceAuth } from './get-service-auth.ts'
import { type SessionStore, SessionUnsealError, type StoredSession } from './session-store.ts'
import { NoSessionError, type UserSessions } from './types.ts'

/** Refresh a session whose access token has less than this left (seconds). */
const REFRESH_MARGIN_SECONDS = 60
/** Ask the PDS for service tokens good for this long (seconds). */
const SERVICE_TOKEN_LIFETIME_SECONDS = 60
/** Mint a new service token once the cached one has less than this left (seconds). */
const SERVICE_TOKEN_MARGIN_SECONDS = 10
const MAX_CACHED_SESSIONS = 1000
const MAX_CACHED_SERVICE_TOKENS = 10_000

/** The password was refused by the PDS (wrong, revoked, or for another account). */
export class PdsLoginRefusedError extends Error {
  override readonly name = 'PdsLoginRefusedError'
}

/** A PDS account password rather than an app password: refused so it is never stored. */
export class AccountPasswordError extends Error {
  override readonly name = 'AccountPasswordError'
}

/** The user's PDS could not be reached or failed; the credentials may well be right. */
export class PdsUnavailableError extends Error {
  override readonly name = 'PdsUnavailableError'
}

/** The PDS limits logins for now. */
export class PdsRateLimitedError extends Error {
  override readonly name = 'PdsRateLimitedError'
}

export interface PdsSessionsOptions {
  store: SessionStore
  fetch: GuardedFetch
  logger: Logger
  /** Told when a DID's stored session ends (refused refresh, unreadable, forgotten). */
  onSessionEnded?: (did: string) => void
  /** OAuth sessions: used first, for users who signed in with OAuth. */
  oauth?: { hasSession(did: string): Promise<boolean>; agentFor(did: string): Promise<Agent> }
  /** Counts the service-token cache's hits and misses (metrics). */
  serviceTokenCounter?: CacheCounter
}

/** A stored app-password session in use, and what its refreshes came to. */
class StoredPasswordSession extends PasswordSession {
  readonly sessionId: string
  /** The PDS refused a refresh, or answered it for another account: the session is over. */
  ended = false
  /** Why the last refresh failed when the PDS did not refuse it (network, 5xx). */
  refreshFailure: RefreshFailure | undefined

  constructor(stored: StoredSession, sessionId: string, options: PasswordSessionOptions) {
    super(toSessionData(stored), options)
    this.sessionId = sessionId
  }
}

export class PdsSessions implements UserSessions {
  private readonly store: SessionStore
  private readonly fetch: GuardedFetch
  private readonly logger: Logger
  private readonly onSessionEnded: (did: string) => void
  private readonly oauth: PdsSessionsOptions['oauth']
  private readonly serviceTokenCounter: CacheCounter | undefined
  private readonly sessions = new Map<string, StoredPasswordSession>()
  private readonly locks = new Map<string, Promise<void>>()
  private readonly writes = new Map<string, Promise<void>>()
  private readonly serviceTokens = new Map<string, { token: string; exp: number }>()
  private readonly pendingServiceTokens = new Map<string, Promise<string>>()

  constructor(options: PdsSessionsOptions) {
    this.store = options.store
    this.fetch = options.fetch
    this.logger = options.logger
    this.onSessionEnded = options.onSessionEnded ?? (() => {})
    this.oauth = options.oauth
    this.serviceTokenCounter = options.serviceTokenCounter
  }

  /**
   * Logs in on the account's PDS with an app password (com.atproto.server.createSession)
   * and keeps the session for later `agentFor(did)` calls, replacing any earlier one.
   */
  async login(
    identity: { did: string; pdsEndpoint: string },
    password: string,
  ): Promise<{ agent: Agent; session: StoredSession; sessionId: string }> {
    const { did, pdsEndpoint } = identity
    let login: PasswordSession
    try {
      login = await PasswordSession.login({
        service: pdsEndpoint,
        identifier: did,
        password,
        fetch: this.fetch as typeof fetch,
      })
    } catch (error) {
      throw loginError(error, pdsEndpoint)
    }
    const data = login.session
    if (data.did !== did) {
      throw new PdsLoginRefusedError(`the PDS at ${pdsEndpoint} answered for another account`)
    }
    if (accessScope(data.accessJwt) === 'com.atproto.access') {
      // Ended at the PDS as a courtesy; the refusal stands whether or not that works.
      await login.logout().catch(() => {})
      throw new AccountPasswordError(
        'that is the account password: create an app password in your account settings and use it instead',
      )
    }
    const session = toStored(data, pdsEndpoint)
    const sessionId = await this.exclusive(did, async () => {
      const id = await this.store.save(session)
      this.forgetCached(did)
      this.cache(did, this.resume(session, id))
      return id
    })
    return { agent: this.sessions.get(did) ?? login, session, sessionId }
  }

  /**
   * Whether the stored app-password session `sessionId` of the DID still stands at its PDS:
   * it is refreshed (the PDS revokes an app password's sessions with it). False when
   * another session replaced it, or the PDS refused or could not be asked.
   */
  async reconfirm(did: string, sessionId: string): Promise<boolean> {
    try {
      return await this.exclusive(did, async () => {
        const session = await this.cachedSession(did)
        if (session.sessionId !== sessionId || session.ended) return false
        await this.refresh(did, session)
        return true
      })
    } catch (error) {
      if (!(error instanceof NoSessionError)) {
        this.logger.info({ did, err: error }, 'could not refresh a stored PDS session')
      }
      return false
    }
  }

  /** The user's OAuth session when they have one, else their app-password session. */
  async agentFor(did: string): Promise<Agent> {
    if (this.oauth && (await this.oauth.hasSession(did))) return this.oauth.agentFor(did)
    return this.appPasswordSession(did)
  }

  private async appPasswordSession(did: string): Promise<StoredPasswordSession> {
    const session = await this.exclusive(did, async () => {
      const session = await this.cachedSession(did)
      if (session.ended) throw await this.dropSession(did, session.sessionId)
      if (expiresWithin(session.session.accessJwt, REFRESH_MARGIN_SECONDS)) {
        await this.refresh(did, session)
      }
      return session
    })
    await this.writes.get(did)
    return session
  }

  /**
   * Refreshes the session now. A refusal ends it (NoSessionError); a refresh the PDS could
   * not answer throws its failure and leaves the session as it was.
   */
  private async refresh(did: string, session: StoredPasswordSession): Promise<void> {
    session.refreshFailure = undefined
    try {
      await session.refresh()
    } catch (error) {
      // A refusal came through the session's hooks (see resume) and ended it.
      if (!session.ended) throw error
    }
    if (session.ended) throw await this.dropSession(did, session.sessionId)
    if (session.refreshFailure) throw session.refreshFailure
  }

  async serviceToken(did: string, aud: string, lxm: string): Promise<string> {
    const key = `${did}\n${aud}\n${lxm}`
    const cached = this.serviceTokens.get(key)
    if (cached && cached.exp - SERVICE_TOKEN_MARGIN_SECONDS > nowSeconds()) {
      this.serviceTokenCounter?.hit()
      return cached.token
    }
    this.serviceTokenCounter?.miss()
    const pending = this.pendingServiceTokens.get(key)
    if (pending) return pending
    const minting = this.mintServiceToken(did, aud, lxm).then((minted) => {
      if (this.serviceTokens.size >= MAX_CACHED_SERVICE_TOKENS) this.pruneServiceTokens()
      this.serviceTokens.set(key, minted)
      return minted.token
    })
    this.pendingServiceTokens.set(key, minting)
    try {
      return await minting
    } finally {
      this.pendingServiceTokens.delete(key)
    }
  }

  /** Forgets the DID's session, here and in the database (the PDS session is left alone). */
  async forget(did: string): Promise<void> {
    await this.exclusive(did, async () => {
      this.forgetCached(did)
      this.onSessionEnded(did)
      await this.store.delete(did)
    })
  }

  /** Whether a session of the DID is stored (it may still turn out expired when used). */
  async hasSession(did: string): Promise<boolean> {
    if (this.sessions.has(did)) return true
    if (this.oauth && (await this.oauth.hasSession(did))) return true
    return this.store.exists(did)
  }

  /** Waits for sessions being written after a refresh. */
  async close(): Promise<void> {
    await Promise.all(this.writes.values())
  }

  private async mintServiceToken(
    did: string,
    aud: string,
    lxm: string,
  ): Promise<{ token: string; exp: number }> {
    const agent = await this.agentFor(did)
    const requestedExp = nowSeconds() + SERVICE_TOKEN_LIFETIME_SECONDS
    let token: string
    try {
      const response = await new Client(agent).xrpc(getServiceAuth, {
        params: { aud: aud as DidString, lxm: lxm as NsidString, exp: requestedExp },
      })
      token = response.body.token
    } catch (error) {
      if (agent instanceof StoredPasswordSession && agent.ended) {
        this.onSessionEnded(did)
        throw new NoSessionError(did)
      }
      throw error
    }
    let exp = requestedExp
    try {
      const claimed = decodeJwt(token).exp
      if (typeof claimed === 'number') exp = Math.min(claimed, requestedExp)
    } catch {
      // Not ours to judge: the hold verifies it. Cache it for the lifetime we asked for.
    }
    return { token, exp }
  }

  /** The DID's app-password session, resumed from the store on first use. */
  private async cachedSession(did: string): Promise<StoredPasswordSession> {
    const cached = this.sessions.get(did)
    if (cached) return cached
    const row = await this.loadRow(did)
    const session = this.resume(row.session, row.sessionId)
    this.cache(did, session)
    return session
  }

  private async loadRow(did: string) {
    let row: Awaited<ReturnType<SessionStore['load']>>
    try {
      row = await this.store.load(did)
    } catch (error) {
      if (!(error instanceof SessionUnsealError)) throw error
      this.logger.warn({ did, reason: error.message }, 'stored PDS session unreadable; dropped')
      this.onSessionEnded(did)
      await this.store.delete(did)
      throw new NoSessionError(did)
    }
    if (!row) {
      this.onSessionEnded(did)
      throw new NoSessionError(did)
    }
    return row
  }

  private async dropSession(did: string, sessionId: string): Promise<NoSessionError> {
    this.forgetCached(did)
    this.onSessionEnded(did)
    await this.writes.get(did)
    await this.store.delete(did, sessionId)
    this.logger.info({ did }, 'PDS session expired; the user must log in again')
    return new NoSessionError(did)
  }

  /**
   * A stored session made usable again (it refreshes itself when the PDS answers that its
   * access token expired): refreshed tokens are sealed again, a refused refresh ends it.
   */
  private resume(stored: StoredSession, sessionId: string): StoredPasswordSession {
    const { did } = stored
    const end = () => {
      session.ended = true
      if (this.sessions.get(did) === session) {
        this.forgetCached(did)
        this.onSessionEnded(did)
      }
      this.queueWrite(did, () => this.store.delete(did, sessionId))
    }
    const session: StoredPasswordSession = new StoredPasswordSession(stored, sessionId, {
      fetch: this.fetch as typeof fetch,
      onUpdated: (data) => {
        // Something is very wrong when a refresh answers for another account.
        if (data.did !== did) return end()
        const refreshed = toStored(data, pdsEndpointOf(data))
        this.queueWrite(did, () => this.store.update(sessionId, refreshed))
      },
      onUpdateFailure: (_data, failure) => {
        // The library ends the session on the refusals the lexicon names; a 401 is one too.
        if (failure instanceof XrpcResponseError && failure.status === 401) return end()
        session.refreshFailure = failure
      },
      onDeleted: end,
    })
    return session
  }

  /** Writes for one DID happen in order; a failed write is logged (the session does not wait). */
  private queueWrite(did: string, write: () => Promise<unknown>): void {
    const previous = this.writes.get(did) ?? Promise.resolve()
    const next = previous
      .then(write)
      .then(
        () => undefined,
        (error: unknown) => {
          this.logger.error({ did, err: error }, 'saving the refreshed PDS session failed')
        },
      )
      .finally(() => {
        if (this.writes.get(did) === next) this.writes.delete(did)
      })
    this.writes.set(did, next)
  }

  private cache(did: string, session: StoredPasswordSession): void {
    this.sessions.delete(did)
    this.sessions.set(did, session)
    if (this.sessions.size > MAX_CACHED_SESSIONS) {
      const oldest = this.sessions.keys().next().value
      if (oldest !== undefined) this.sessions.delete(oldest)
    }
  }

  private forgetCached(did: string): void {
    this.sessions.delete(did)
    for (const key of this.serviceTokens.keys()) {
      if (key.startsWith(`${did}\n`)) this.serviceTokens.delete(key)
    }
  }

  private pruneServiceTokens(): void {
    const now = nowSeconds()
    for (const [key, { exp }] of this.serviceTokens) {
      if (exp - SERVICE_TOKEN_MARGIN_SECONDS <= now) this.serviceTokens.delete(key)
    }
    while (this.serviceTokens.size >= MAX_CACHED_SERVICE_TOKENS) {
      const oldest = this.serviceTokens.keys().next().value
      if (oldest === undefined) break
      this.serviceTokens.delete(oldest)
    }
  }

  /** Runs `fn` after every earlier call for the same DID has finished. */
  private async exclusive<T>(did: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(did) ?? Promise.resolve()
    let release!: () => void
    const done = new Promise<void>((resolve) => {
      release = resolve
    })
    const tail = previous.then(() => done)
    this.locks.set(did, tail)
    await previous
    try {
      return await fn()
    } finally {
      release()
      if (this.locks.get(did) === tail) this.locks.delete(did)
    }
  }
}

function toStored(data: SessionData, pdsEndpoint: string): StoredSession {
  const session: StoredSession = {
    did: data.did,
    handle: data.handle,
    pdsEndpoint,
    accessJwt: data.accessJwt,
    refreshJwt: data.refreshJwt,
    active: data.active ?? true,
  }
  if (data.status !== undefined) session.status = data.status
  return session
}

function toSessionData(stored: StoredSession): SessionData {
  const data: SessionData = {
    did: stored.did as SessionData['did'],
    handle: stored.handle as SessionData['handle'],
    accessJwt: stored.accessJwt,
    refreshJwt: stored.refreshJwt,
    active: stored.active,
    service: stored.pdsEndpoint,
  }
  if (stored.status !== undefined) data.status = stored.status
  return data
}

/** Where a refreshed session lives: the PDS its DID document names, else where it was. */
function pdsEndpointOf(data: SessionData): string {
  const endpoint = extractPdsEndpoint(data.didDoc)
  return endpoint ? new URL(endpoint).href.replace(/\/+$/, '') : data.service
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}

/** The `scope` claim of a PDS access token (the reference PDS issues JWTs); else undefined. */
function accessScope(accessJwt: string): unknown {
  try {
    return decodeJwt(accessJwt).scope
  } catch {
    return undefined
  }
}

/**
 * Whether a JWT access token runs out within `seconds`. A token that is not a JWT or has no
 * `exp` is used as it is: the session refreshes it when the PDS answers ExpiredToken.
 */
function expiresWithin(jwt: string, seconds: number): boolean {
  let exp: unknown
  try {
    exp = decodeJwt(jwt).exp
  } catch {
    return false
  }
  return typeof exp === 'number' && exp - seconds <= nowSeconds()
}

function loginError(error: unknown, pdsEndpoint: string): Error {
  // A second factor is asked for account passwords only: the PDS refused this one (401).
  const failure = error instanceof LexAuthFactorError ? error.cause : error
  if (failure instanceof XrpcResponseError) {
    if (failure.status === 401 || failure.status === 400) {
      return new PdsLoginRefusedError(failure.message, { cause: error })
    }
    if (failure.status === 429) {
      return new PdsRateLimitedError(`the PDS at ${pdsEndpoint} limits logins; try again later`, {
        cause: error,
      })
    }
  }
  return new PdsUnavailableError(`the PDS at ${pdsEndpoint} could not be reached`, {
    cause: error,
  })
}
