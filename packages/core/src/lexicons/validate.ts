import { BlobRef, jsonToLex, type LexBlob, ValidationError } from '@atproto/lexicon'
import { lexicons } from './documents.ts'
import type {
  InputNsid,
  InputTypes,
  MessageNsid,
  MessageTypes,
  OutputNsid,
  OutputTypes,
  ParamsNsid,
  ParamsTypes,
  RecordNsid,
  RecordTypes,
} from './generated.ts'

export type ValidationTarget = 'record' | 'params' | 'input' | 'output' | 'message'

/**
 * A value does not match its lexicon. The message starts with the path of the failing field,
 * for example `Record/repository must not be longer than 255 characters` or
 * `Input must have the property "digest"`.
 */
export class LexiconValidationError extends Error {
  readonly nsid: string
  readonly target: ValidationTarget

  constructor(nsid: string, target: ValidationTarget, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'LexiconValidationError'
    this.nsid = nsid
    this.target = target
  }
}

function check<T>(nsid: string, target: ValidationTarget, run: () => unknown): T {
  try {
    return run() as T
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new LexiconValidationError(nsid, target, err.message, { cause: err })
    }
    throw err
  }
}

const mimeMatches = (pattern: string, mime: string): boolean =>
  pattern === '*/*' ||
  pattern === mime ||
  (pattern.endsWith('/*') && mime.startsWith(pattern.slice(0, -1)))

// @atproto/lexicon only checks that a blob field holds a BlobRef; the `accept` and `maxSize`
// constraints (repo page avatar, scan blobs) are checked here. All our blob fields are top level.
function assertBlobConstraints(nsid: RecordNsid, record: Record<string, unknown>): void {
  const def = lexicons.getDefOrThrow(nsid, ['record'])
  for (const [key, prop] of Object.entries(def.record.properties ?? {})) {
    if (prop.type !== 'blob') continue
    const blob = record[key]
    if (!(blob instanceof BlobRef)) continue
    const { accept, maxSize } = prop as LexBlob
    if (accept && !accept.some((pattern) => mimeMatches(pattern, blob.mimeType))) {
      throw new ValidationError(
        `Record/${key} mimeType must be one of ${accept.join(', ')}, not ${blob.mimeType}`,
      )
    }
    if (maxSize !== undefined && blob.size > maxSize) {
      throw new ValidationError(`Record/${key} must not be larger than ${maxSize} bytes`)
    }
  }
}

/**
 * Checks a record (with `$type`) against its lexicon and returns it typed, with lexicon defaults
 * applied. Blob fields must be `BlobRef` instances, as `@atproto/repo`'s record readers and
 * `jsonToLex` produce them; for records in their JSON form use `validateRecordJson`.
 */
export function validateRecord<N extends RecordNsid>(nsid: N, value: unknown): RecordTypes[N] {
  return check(nsid, 'record', () => {
    // Checked first: @atproto/lexicon resolves `$type` as a URI and throws a plain Error
    // for some (such as "#") instead of a ValidationError.
    const type = (value as { $type?: unknown } | null)?.$type
    if (typeof type === 'string' && type !== nsid && type !== `${nsid}#main`) {
      throw new ValidationError(`Invalid $type: must be ${nsid}, got ${type.slice(0, 100)}`)
    }
    const record = lexicons.assertValidRecord(nsid, value) as Record<string, unknown>
    assertBlobConstraints(nsid, record)
    return record
  })
}

/** Like `validateRecord`, for a record in atproto JSON form (e.g. from com.atproto.repo.getRecord). */
export function validateRecordJson<N extends RecordNsid>(nsid: N, json: unknown): RecordTypes[N] {
  let value: unknown
  try {
    value = jsonToLex(json)
  } catch (err) {
    // jsonToLex refuses keys such as `__proto__` with a TypeError: the record's fault.
    throw new LexiconValidationError(
      nsid,
      'record',
      `Record is not valid atproto data: ${(err as Error).message}`,
      { cause: err },
    )
  }
  return validateRecord(nsid, value)
}

/** Checks already-decoded query parameters (numbers as numbers) of a method. */
export function validateParams<N extends ParamsNsid>(nsid: N, value: unknown): ParamsTypes[N] {
  return check(nsid, 'params', () => lexicons.assertValidXrpcParams(nsid, value))
}

/** Checks the JSON request body of a procedure. */
export function validateInput<N extends InputNsid>(nsid: N, value: unknown): InputTypes[N] {
  return check(nsid, 'input', () => lexicons.assertValidXrpcInput(nsid, value))
}

/** Checks the JSON response body of a method. */
export function validateOutput<N extends OutputNsid>(nsid: N, value: unknown): OutputTypes[N] {
  return check(nsid, 'output', () => lexicons.assertValidXrpcOutput(nsid, value))
}

/** Checks one message of a subscription (a member of its union, with `$type`). */
export function validateMessage<N extends MessageNsid>(nsid: N, value: unknown): MessageTypes[N] {
  return check(nsid, 'message', () => lexicons.assertValidXrpcMessage(nsid, value))
}
