// Lexicon checks at the edge of the io.atcr.hold methods: a bad input or parameter is a
// 400 (InvalidRequest or the method's own error name); an answer that does not match its
// lexicon is our bug, so it fails loudly (500) instead of reaching a client.
import {
  type InputNsid,
  type InputTypes,
  LexiconValidationError,
  type OutputNsid,
  type OutputTypes,
  type ParamsNsid,
  type ParamsTypes,
  validateInput,
  validateOutput,
  validateParams,
} from '@atcr/core/lexicons'
import { invalidRequest } from './error.ts'

/** The JSON body of a procedure; no body counts as `{}`. */
export function parseInput<N extends InputNsid>(
  nsid: N,
  body: unknown,
  error = 'InvalidRequest',
): InputTypes[N] {
  return rethrow(() => validateInput(nsid, body ?? {}), error)
}

/** The query parameters of a query (only string parameters are decoded as they come). */
export function parseParams<N extends ParamsNsid>(
  nsid: N,
  query: unknown,
  error = 'InvalidRequest',
): ParamsTypes[N] {
  return rethrow(() => validateParams(nsid, query ?? {}), error)
}

/** The answer, checked against the method's output schema. */
export function output<N extends OutputNsid>(nsid: N, value: OutputTypes[N]): OutputTypes[N] {
  return validateOutput(nsid, value)
}

function rethrow<T>(run: () => T, error: string): T {
  try {
    return run()
  } catch (err) {
    if (err instanceof LexiconValidationError) throw invalidRequest(err.message, error)
    throw err
  }
}
