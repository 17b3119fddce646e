import { XrpcError } from '../xrpc/error.ts'

/** A create whose path already holds a record. */
export class RecordAlreadyExistsError extends XrpcError {
  constructor(uri: string) {
    super(400, 'RecordAlreadyExists', `Record already exists: ${uri}`)
    this.name = 'RecordAlreadyExistsError'
  }
}

/** An update or delete of a path that holds no record, or a read of a missing record. */
export class RecordNotFoundError extends XrpcError {
  constructor(uri: string) {
    super(400, 'RecordNotFound', `Could not locate record: ${uri}`)
    this.name = 'RecordNotFoundError'
  }
}

/** A write the repo cannot take: bad collection or rkey, a path written twice, bad value. */
export class InvalidWriteError extends XrpcError {
  constructor(message: string, options?: ErrorOptions) {
    super(400, 'InvalidRequest', message, options)
    this.name = 'InvalidWriteError'
  }
}

/** A repo other than the hold's own. */
export class RepoNotFoundError extends XrpcError {
  constructor(repo: string) {
    super(400, 'RepoNotFound', `Could not find repo: ${repo}`)
    this.name = 'RepoNotFoundError'
  }
}

/** The head moved under a commit being built: another process wrote to the database. */
export class ConcurrentWriteError extends Error {
  constructor() {
    super('the repo head changed while a commit was being built')
    this.name = 'ConcurrentWriteError'
  }
}
