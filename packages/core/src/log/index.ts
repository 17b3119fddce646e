/**
 * The one logger factory of the ATCR services: pino, JSON lines, one child logger per
 * subsystem, and credentials redacted wherever request/response logs carry them.
 */
import pino from 'pino'

export type Logger = pino.Logger
export type LogDestination = pino.DestinationStream

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

const CENSOR = '[redacted]'

const SECRET_HEADERS = [
  'authorization',
  'Authorization',
  'proxy-authorization',
  'cookie',
  'Cookie',
  'set-cookie',
  'dpop',
  'DPoP',
]

/** Fields that hold credentials whatever object they sit in. */
const SECRET_FIELDS = [
  'password',
  'accessJwt',
  'refreshJwt',
  'secret',
  'token',
  'accessToken',
  'refreshToken',
  'access_token',
  'refresh_token',
  'client_secret',
  'privateKey',
  'private_key',
  'secretAccessKey',
  'secret_access_key',
  'authorization',
  'cookie',
]

function prop(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `["${key}"]`
}

/**
 * Paths pino blanks out: secret headers in any `headers` object at the top level or up to
 * two levels down (`req.headers`, `res.headers`, `err.response.headers`), and secret fields
 * at the top level or one level down (`password`, `body.password`).
 */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_HEADERS.flatMap((h) =>
    ['headers', '*.headers', '*.*.headers'].map((base) => `${base}${prop(h)}`),
  ),
  ...SECRET_FIELDS.flatMap((f) => [f, `*${prop(f)}`]),
]

/**
 * pino's error serializer, with what the atproto clients attach to their errors cut down:
 * the fetch Response (or Request) they failed on, whose getters throw on the copies that
 * redaction makes, becomes its status and URL; lex-client's method schema becomes its NSID.
 */
function serializeError(error: Error): unknown {
  const serialized = pino.stdSerializers.err(error) as unknown
  if (serialized === error || typeof serialized !== 'object' || serialized === null) {
    return serialized
  }
  const fields = serialized as Record<string, unknown>
  for (const [key, value] of Object.entries(fields)) {
    if (value instanceof Response) fields[key] = { status: value.status, url: value.url }
    else if (value instanceof Request) fields[key] = { method: value.method, url: value.url }
    else if (isMethodSchema(value)) fields[key] = value.nsid
  }
  return fields
}

function isMethodSchema(value: unknown): value is { nsid: string } {
  const { type, nsid } = (value ?? {}) as { type?: unknown; nsid?: unknown }
  return (type === 'query' || type === 'procedure') && typeof nsid === 'string'
}

export interface CreateLoggerOptions {
  /** Minimum level written; `info` when omitted. */
  level?: LogLevel
  /** The service, e.g. `atcr-hold`; written as `name` on every line. */
  name?: string
  /** Where lines go; stdout when omitted. */
  destination?: LogDestination
}

/** The root logger of a service. */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const { level = 'info', name, destination } = options
  const opts: pino.LoggerOptions = {
    level,
    redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    serializers: { err: serializeError },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }
  if (name !== undefined) opts.name = name
  return destination ? pino(opts, destination) : pino(opts)
}

/** The logger of one part of a service: every line carries `subsystem`. */
export function subsystemLogger(root: Logger, subsystem: string): Logger {
  return root.child({ subsystem })
}

/** A logger that writes nothing, for tests. */
export function silentLogger(): Logger {
  return createLogger({ level: 'silent' })
}

export interface CapturedLogs {
  readonly logger: Logger
  /** Lines written so far, parsed. */
  records(): Record<string, unknown>[]
  /** Lines written so far, as written. */
  text(): string
  clear(): void
  /**
   * For `afterEach((t) => logs.flushIfFailed(t))`: when the test failed, writes the lines
   * logged during it to stderr; then forgets them either way.
   */
  flushIfFailed(test: { readonly passed: boolean; readonly name: string }): void
}

/** A logger whose lines are kept in memory, for tests that read logs or show them on failure. */
export function captureLogger(
  options: Omit<CreateLoggerOptions, 'destination'> = {},
): CapturedLogs {
  let lines: string[] = []
  const logger = createLogger({
    level: 'debug',
    ...options,
    destination: { write: (line: string) => void lines.push(line) },
  })
  return {
    logger,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => lines.join(''),
    clear: () => {
      lines = []
    },
    flushIfFailed(test) {
      if (!test.passed && lines.length > 0) {
        process.stderr.write(`--- logs of failed test "${test.name}" ---\n${lines.join('')}`)
      }
      lines = []
    },
  }
}
