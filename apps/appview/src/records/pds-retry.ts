// Writes to a user's PDS tried again after a transient failure. A PDS answers 500 when
// several writes to one repository collide (its SQLite stays busy past its own retries:
// ten clients of one account pushing at once in the load test), and a connection can
// drop. Every write here is idempotent (a record put under a fixed key, a content-addressed
// blob, a delete), so trying it again cannot do it twice.
import { XrpcFetchError } from '@atproto/lex-client'

/** Attempts in all, and the pause before each retry (doubled, with jitter). */
const ATTEMPTS = 3
const FIRST_PAUSE_MS = 150

/** A failure worth trying again: no answer, or a 5xx other than 501 Not Implemented. */
function transient(error: unknown): boolean {
  if (error instanceof XrpcFetchError) return true
  const status = (error as { status?: unknown }).status
  return typeof status === 'number' && status >= 500 && status !== 501
}

export async function retryPdsWrite<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write()
    } catch (error) {
      if (attempt >= ATTEMPTS || !transient(error)) throw error
      const pause = FIRST_PAUSE_MS * 2 ** (attempt - 1)
      await new Promise((resolve) => setTimeout(resolve, pause / 2 + Math.random() * pause))
    }
  }
}
