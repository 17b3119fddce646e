// What signed-in users change from the pages, written as records in their own repository
// through their OAuth session (stars, a repository's page, their sailor profile), then
// applied to the index at once so that the next page shows it (the firehose brings the same
// change later; applying it twice is harmless).
import { createHash } from 'node:crypto'
import {
  LexiconValidationError,
  NSID,
  type RecordNsid,
  repoPageRkey,
  SELF_RKEY,
  validateRecordJson,
} from '@atcr/core/lexicons'
import { Client, type NsidString, XrpcResponseError } from '@atproto/lex-client'
import { lexToJson } from '@atproto/lex-json'
import { NoSessionError } from '../auth/types.ts'
import type { AppViewContext } from '../context.ts'
import { inRepo, lexRecord } from '../records/lex-record.ts'

/** A write the user's PDS refused or could not take; its message is for the user. */
export class RecordWriteError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.name = 'RecordWriteError'
    this.status = status
  }
}

export interface ProfileSettings {
  defaultHold: string | null
  autoRemoveUntagged: boolean
  /** Which client the pages write pull commands for (absent: docker). */
  ociClient: string | null
}

type RecordValue = Record<string, unknown>

/** The AT-URI a star of a repository names: its io.atcr.repo.page record. */
export function repoPageUri(ownerDid: string, repository: string): string {
  return `at://${ownerDid}/${NSID.repoPage}/${repoPageRkey(repository)}`
}

/** One star per repository and starrer: its key comes from what it stars. */
function starRkey(subject: string): string {
  return createHash('sha256').update(subject).digest('hex').slice(0, 32)
}

export class UserRecords {
  readonly #ctx: AppViewContext

  constructor(ctx: AppViewContext) {
    this.#ctx = ctx
  }

  async star(did: string, ownerDid: string, repository: string): Promise<void> {
    const subject = repoPageUri(ownerDid, repository)
    const record = { $type: NSID.sailorStar, subject, createdAt: new Date().toISOString() }
    await this.#put(did, NSID.sailorStar, starRkey(subject), record)
  }

  /** Removes every star of `did` for the repository (the one made here and any other). */
  async unstar(did: string, ownerDid: string, repository: string): Promise<void> {
    const indexed = await this.#ctx.web.browse.starKeys(did, ownerDid, repository)
    const rkeys = new Set([...indexed, starRkey(repoPageUri(ownerDid, repository))])
    const client = await this.#client(did)
    for (const rkey of rkeys) {
      await this.#write(() => client.deleteRecord(NSID.sailorStar, rkey, inRepo(did)))
      await this.#ctx.index.apply({ did, collection: NSID.sailorStar, rkey, record: null })
    }
  }

  /** Sets the Markdown of the owner's io.atcr.repo.page for a repository. */
  async setDescription(did: string, repository: string, description: string): Promise<void> {
    const rkey = repoPageRkey(repository)
    const now = new Date().toISOString()
    const previous = await this.#get(did, NSID.repoPage, rkey)
    const record: RecordValue = {
      ...previous,
      $type: NSID.repoPage,
      repository,
      createdAt: previous?.createdAt ?? now,
      updatedAt: now,
      userEdited: true,
    }
    if (description.trim()) record.description = description
    else delete record.description
    await this.#put(did, NSID.repoPage, rkey, record)
  }

  /** The user's io.atcr.sailor.profile settings, as their PDS has them. */
  async profile(did: string): Promise<ProfileSettings> {
    const value = await this.#get(did, NSID.sailorProfile, SELF_RKEY)
    return {
      defaultHold: typeof value?.defaultHold === 'string' ? value.defaultHold : null,
      autoRemoveUntagged: value?.autoRemoveUntagged === true,
      ociClient: typeof value?.ociClient === 'string' ? value.ociClient : null,
    }
  }

  async setProfile(did: string, settings: ProfileSettings): Promise<void> {
    const now = new Date().toISOString()
    const previous = await this.#get(did, NSID.sailorProfile, SELF_RKEY)
    const record: RecordValue = {
      ...previous,
      $type: NSID.sailorProfile,
      createdAt: previous?.createdAt ?? now,
      updatedAt: now,
      autoRemoveUntagged: settings.autoRemoveUntagged,
    }
    if (settings.defaultHold) record.defaultHold = settings.defaultHold
    else delete record.defaultHold
    if (settings.ociClient) record.ociClient = settings.ociClient
    else delete record.ociClient
    const written = await this.#put(did, NSID.sailorProfile, SELF_RKEY, record)
    // The registry reads the profile (push hold, autoRemoveUntagged) through its cache.
    this.#ctx.registry.reader.remember(
      did,
      NSID.sailorProfile,
      { uri: written.uri, cid: written.cid, rkey: SELF_RKEY, value: record },
      SELF_RKEY,
    )
  }

  async #client(did: string): Promise<Client> {
    try {
      return new Client(await this.#ctx.oauth.agentFor(did))
    } catch (error) {
      if (error instanceof NoSessionError) {
        throw new RecordWriteError(401, 'Your sign-in has expired: sign out and sign in again.')
      }
      throw error
    }
  }

  async #get(did: string, collection: string, rkey: string): Promise<RecordValue | null> {
    const client = await this.#client(did)
    try {
      const response = await client.getRecord(collection as NsidString, rkey, inRepo(did))
      // In JSON form (blob refs as {$link}), as the records are validated and written back.
      return lexToJson(response.body.value) as RecordValue
    } catch (error) {
      if (error instanceof XrpcResponseError && error.error === 'RecordNotFound') return null
      throw new RecordWriteError(502, `Your PDS did not answer: ${(error as Error).message}`)
    }
  }

  async #put(
    did: string,
    collection: RecordNsid,
    rkey: string,
    record: RecordValue,
  ): Promise<{ uri: string; cid: string }> {
    try {
      validateRecordJson(collection, record)
    } catch (error) {
      if (error instanceof LexiconValidationError) {
        throw new RecordWriteError(400, `The change does not fit ${collection}: ${error.message}`)
      }
      throw error
    }
    const client = await this.#client(did)
    const written = await this.#write(() =>
      client.putRecord(lexRecord({ ...record, $type: collection }), rkey, inRepo(did)),
    )
    await this.#ctx.index.apply({ did, collection, rkey, record })
    return written.body
  }

  async #write<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (error) {
      const status = (error as { status?: unknown }).status
      const reason = error instanceof Error ? error.message : String(error)
      if (status === 401 || status === 403) {
        throw new RecordWriteError(403, `Your PDS refused the change: ${reason}`)
      }
      throw new RecordWriteError(502, `Your PDS could not take the change: ${reason}`)
    }
  }
}
