export {
  BadSignatureError,
  BlockHashMismatchError,
  CarError,
  type CarErrorCode,
  CarMalformedError,
  CarMissingBlockError,
  CarTooLargeError,
  CarTruncatedError,
  EmptyRepoError,
  InvalidCommitError,
  InvalidMstError,
  InvalidRecordError,
  WrongDidError,
} from './errors.ts'
export { exportRepoCar, type RepoBlockSource, type WriteCarOptions, writeCarTo } from './export.ts'
export {
  type ReadRepoCarOptions,
  type RepoRecord,
  readRepoCar,
  type VerifiedRepoCar,
} from './import.ts'
export { type MstLeaf, mstKeyLayer, walkMst } from './mst.ts'
export {
  type CarBlock,
  type CarContents,
  type CarReadOptions,
  type CarSource,
  DEFAULT_MAX_CAR_BYTES,
  readCar,
  readCarStream,
} from './reader.ts'
