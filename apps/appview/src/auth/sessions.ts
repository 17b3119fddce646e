// The users' PDS sessions in use: logging in with an app password, agents resumed from the
// sealed store (refreshed before their access token runs out, one refresh per DID at a
// time, refreshed tokens sealed again), and service tokens minted by the user's PDS.
import type { CacheCounter, GuardedFetch } from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import type { Agent, AtpAgent, AtpSessionData } from '@atproto/api'
import { decodeJwt } from 'jose'
import { loadAtpApi } from './atp-api.ts'
import { type SessionStore, SessionUnsealError, type StoredSession } from './session-store.ts'
import { NoSessionError, type UserSessions } from './types.ts'

/** Refresh a session whose access token has less than this left (seconds). */
const REFRESH_MARGIN_SECONDS = 60
/** Ask the PDS for service tokens good for this long (seconds). */
const SERVICE_TOKEN_LIFETIME_SECONDS = 60
/** Mint a new service token once the cached one has less than this left (seconds). */
const SERVICE_TOKEN_MARGIN_SECONDS = 10
const MAX_CACHED_AGENTS = 1000
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

interface CachedAgent {
  agent: AtpAgent
  sessionId: string
}

export class PdsSessions implements UserSessions {
  private readonly store: SessionStore
  private readonly fetch: GuardedFetch
  private readonly logger: Logger
  private readonly onSessionEnded: (did: string) => void
  private readonly oauth: PdsSessionsOptions['oauth']
  private readonly serviceTokenCounter: CacheCounter | undefined
  private readonly agents = new Map<string, CachedAgent>()
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
  ): Promise<{ agent: AtpAgent; session: StoredSession; sessionId: string }> {
    const { did, pdsEndpoint } = identity
    const { AtpAgent, XRPCError } = await loadAtpApi()
    const agent = new AtpAgent({ service: pdsEndpoint, fetch: this.fetch as typeof fetch })
    let data: AtpSessionData
    try {
      const response = await agent.login({ identifier: did, password })
      data = { ...response.data, active: response.data.active ?? true }
    } catch (error) {
      throw loginError(error, pdsEndpoint, XRPCError)
    }
    if (data.did !== did) {
      throw new PdsLoginRefusedError(`the PDS at ${pdsEndpoint} answered for another account`)
    }
    if (accessScope(data.accessJwt) === 'com.atproto.access') {
      await agent.logout()
      throw new AccountPasswordError(
        'that is the account password: create an app password in your account settings and use it instead',
      )
    }
    const session = toStored(data, pdsEndpoint)
    const sessionId = await this.exclusive(did, async () => {
      const id = await this.store.save(session)
      this.forgetCached(did)
      this.cache(did, await this.makeAgent(session, id), id)
      return id
    })
    return { agent: this.agents.get(did)?.agent ?? agent, session, sessionId }
  }

  /**
   * Whether the stored app-password session `sessionId` of the DID still stands at its PDS:
   * it is refreshed (the PDS revokes an app password's sessions with it). False when
   * another session replaced it, or the PDS refused or could not be asked.
   */
  async reconfirm(did: string, sessionId: string): Promise<boolean> {
    try {
      return await this.exclusive(did, async () => {
        const cached = await this.cachedAgent(did)
        if (cached.sessionId !== sessionId || !cached.agent.session) return false
        await cached.agent.sessionManager.refreshSession()
        return cached.agent.session !== undefined
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
    return this.appPasswordAgent(did)
  }

  private async appPasswordAgent(did: string): Promise<AtpAgent> {
    const agent = await this.exclusive(did, async () => {
      const cached = await this.cachedAgent(did)
      const { agent } = cached
      if (!agent.session) throw await this.dropSession(did, cached.sessionId)
      if (expiresWithin(agent.session.accessJwt, REFRESH_MARGIN_SECONDS)) {
        try {
          await agent.sessionManager.refreshSession()
        } catch (error) {
          // The agent drops its session when the PDS refuses the refresh token.
          if (!agent.session) throw await this.dropSession(did, cached.sessionId)
          throw error
        }
      }
      return agent
    })
    await this.writes.get(did)
    return agent
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
    if (this.agents.has(did)) return true
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
      const response = await agent.com.atproto.server.getServiceAuth({
        aud,
        lxm,
        exp: requestedExp,
      })
      token = response.data.token
    } catch (error) {
      if ('session' in agent && !agent.session) {
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

  /** The DID's app-password agent, made from its stored session on first use. */
  private async cachedAgent(did: string): Promise<CachedAgent> {
    const cached = this.agents.get(did)
    if (cached) return cached
    const row = await this.loadRow(did)
    const agent = await this.makeAgent(row.session, row.sessionId)
    this.cache(did, agent, row.sessionId)
    return { agent, sessionId: row.sessionId }
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

  private async makeAgent(session: StoredSession, sessionId: string): Promise<AtpAgent> {
    const { AtpAgent } = await loadAtpApi()
    const agent = new AtpAgent({
      service: session.pdsEndpoint,
      fetch: this.fetch as typeof fetch,
      persistSession: (event, data) => {
        if (event === 'update' && data) {
          const pds = agent.sessionManager.pdsUrl?.href.replace(/\/+$/, '') ?? session.pdsEndpoint
          this.queueWrite(session.did, () => this.store.update(sessionId, toStored(data, pds)))
        } else if (event === 'expired') {
          if (this.agents.get(session.did)?.agent === agent) {
            this.forgetCached(session.did)
            this.onSessionEnded(session.did)
          }
          this.queueWrite(session.did, () => this.store.delete(session.did, sessionId))
        }
      },
    })
    agent.sessionManager.session = {
      did: session.did,
      handle: session.handle,
      accessJwt: session.accessJwt,
      refreshJwt: session.refreshJwt,
      active: session.active,
      status: session.status,
    }
    return agent
  }

  /** Writes for one DID happen in order; a failed write is logged (the agent does not wait). */
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

  private cache(did: string, agent: AtpAgent, sessionId: string): void {
    this.agents.delete(did)
    this.agents.set(did, { agent, sessionId })
    if (this.agents.size > MAX_CACHED_AGENTS) {
      const oldest = this.agents.keys().next().value
      if (oldest !== undefined) this.agents.delete(oldest)
    }
  }

  private forgetCached(did: string): void {
    this.agents.delete(did)
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

function toStored(data: AtpSessionData, pdsEndpoint: string): StoredSession {
  const session: StoredSession = {
    did: data.did,
    handle: data.handle,
    pdsEndpoint,
    accessJwt: data.accessJwt,
    refreshJwt: data.refreshJwt,
    active: data.active,
  }
  if (data.status !== undefined) session.status = data.status
  return session
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
 * `exp` is used as it is: the agent refreshes it when the PDS answers ExpiredToken.
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

function loginError(
  error: unknown,
  pdsEndpoint: string,
  XRPCError: Awaited<ReturnType<typeof loadAtpApi>>['XRPCError'],
): Error {
  if (error instanceof XRPCError) {
    if (error.status === 401 || error.status === 400) {
      return new PdsLoginRefusedError(error.message, { cause: error })
    }
    if (error.status === 429) {
      return new PdsRateLimitedError(`the PDS at ${pdsEndpoint} limits logins; try again later`, {
        cause: error,
      })
    }
  }
  return new PdsUnavailableError(`the PDS at ${pdsEndpoint} could not be reached`, {
    cause: error,
  })
}
