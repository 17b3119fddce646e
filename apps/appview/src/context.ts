import { join } from 'node:path'
import {
  createGuardedFetch,
  createIdentityResolver,
  type GuardedFetch,
  type IdentityResolver,
  type LookupAll,
  type ResolveTxt,
} from '@atcr/core/identity'
import type { Logger } from '@atcr/core/log'
import type { RegistryAuth, UserSessions } from './auth/types.ts'
import type { AppViewConfig } from './config.ts'
import { type AppViewDatabase, openAppViewDatabase } from './db/index.ts'

/** What every part of the AppView shares, built once from config and handed to routes. */
export interface AppViewBase {
  config: AppViewConfig
  logger: Logger
  db: AppViewDatabase
  /** Every outbound request goes through it: in production mode, https and public addresses only. */
  fetch: GuardedFetch
  identity: IdentityResolver
}

export interface AppViewContext extends AppViewBase {
  auth: RegistryAuth
  sessions: UserSessions
}

/** Name resolution in place of the system's (tests: `@atcr/testkit` staticDns). */
export interface DnsOverrides {
  lookup?: LookupAll
  resolveTxt?: ResolveTxt
}

export async function createBase(
  config: AppViewConfig,
  logger: Logger,
  dns: DnsOverrides = {},
): Promise<AppViewBase> {
  const mode = config.server.mode
  const fetch = createGuardedFetch({ mode, lookup: dns.lookup })
  const identity = createIdentityResolver({
    mode,
    plcUrl: config.identity.plc_directory_url,
    fetch,
    resolveTxt: dns.resolveTxt,
    handleResolver: config.identity.handle_resolver_url ?? undefined,
  })
  const db = await openAppViewDatabase(join(config.server.data_dir, 'appview.sqlite'))
  return { config, logger, db, fetch, identity }
}

export async function closeBase(base: AppViewBase): Promise<void> {
  await base.identity.close()
  await base.db.close()
  await base.fetch.close()
}
