// The hold's embedded single-repo PDS: open it with openHoldRepo, serve it with
// registerRepoRoutes; every record change goes through its writer.

export { type OciBlobHandler, type RepoRoutesOptions, registerRepoRoutes } from './api/index.ts'
export {
  ConcurrentWriteError,
  InvalidWriteError,
  RecordAlreadyExistsError,
  RecordNotFoundError,
  RepoNotFoundError,
} from './errors.ts'
export {
  type HoldRepo,
  type OpenHoldRepoOptions,
  openHoldRepo,
} from './hold-repo.ts'
export {
  type CarExport,
  type ListRecordsQuery,
  type RepoHeadInfo,
  RepoReader,
  type RepoRecord,
} from './reader.ts'
export { type SeqEvent, Sequencer } from './sequencer.ts'
export { type BlobRefJson, BlobStore, type StoredBlob } from './storage/blob-store.ts'
export {
  type AppliedWrite,
  type CommitResult,
  type ImportRecord,
  type PublishedIdentity,
  type RecordWrite,
  RepoWriter,
} from './writer.ts'
