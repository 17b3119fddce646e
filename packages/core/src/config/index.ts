/**
 * The one config loader of the ATCR services. Each app declares one zod schema; from it
 * come the typed config, validation, environment overrides and the commented YAML that
 * `config init` writes.
 *
 * Layers, each over the one before: field defaults < YAML file < environment < overrides.
 * Environment variables are named after the YAML path with the app's prefix:
 * `storage.s3.bucket` with prefix `ATCR_HOLD` is `ATCR_HOLD_STORAGE_S3_BUCKET`.
 */
import { z } from 'zod/v4'
import { type DeepPartial, type Env, type LoadOptions, loadConfig } from './load.ts'
import { buildSection, type ConfigField, ENV_PREFIX_RE, fieldsOf } from './schema.ts'
import { writeYaml } from './write-yaml.ts'

export { ConfigError, type ConfigIssue, formatIssue } from './errors.ts'
export {
  type ConfigField,
  did,
  duration,
  formatDuration,
  httpUrl,
  logSection,
  metricsSection,
  parseDuration,
  secret,
  shutdownGraceField,
  trustProxyField,
} from './schema.ts'
export type { DeepPartial, Env, LoadOptions }
export { z }

/** The root of a config schema: a z.object whose keys are sections (z.object) or fields. */
export type ConfigSchema = z.ZodObject<z.core.$ZodLooseShape, z.core.$ZodObjectConfig>

export interface ConfigDefinitionOptions<S extends ConfigSchema> {
  /** Prefix of every environment variable, e.g. `ATCR_HOLD`. */
  envPrefix: string
  schema: S
  /** First line of the YAML `config init` writes. */
  title?: string
}

export interface ConfigDefinition<S extends ConfigSchema> {
  readonly schema: S
  readonly envPrefix: string
  /** Defaults, then the file, the environment and overrides; throws ConfigError. */
  load(options?: LoadOptions<z.input<S>>): z.output<S>
  /** The config when nothing is set (throws ConfigError if the schema's own checks reject it). */
  defaults(): z.output<S>
  /** Every section and key with its description, default and environment variable. */
  toYaml(): string
  /** `storage.s3.bucket` → `ATCR_HOLD_STORAGE_S3_BUCKET`; throws for a path that is no field. */
  envVarFor(path: string): string
  /** Every field, in schema order. */
  fields(): readonly ConfigField[]
  /** A copy fit for logging: secret fields that are set read `[redacted]`. */
  redact(config: z.output<S>): z.output<S>
}

export type InferConfig<D> = D extends ConfigDefinition<infer S> ? z.output<S> : never

const REDACTED = '[redacted]'

/**
 * Declares an app's config. Mistakes in the schema itself (a field without default or
 * description, a secret with a default, a key that is not snake_case, two keys with one env
 * name) throw here, when the module is loaded.
 */
export function defineConfig<S extends ConfigSchema>(
  options: ConfigDefinitionOptions<S>,
): ConfigDefinition<S> {
  const { envPrefix, schema, title } = options
  if (!ENV_PREFIX_RE.test(envPrefix)) {
    throw new TypeError(`config: envPrefix must be UPPER_SNAKE_CASE, got ${envPrefix}`)
  }
  const root = buildSection(envPrefix, [], schema, undefined)
  const fields = fieldsOf(root)
  const byEnv = new Map<string, ConfigField>()
  for (const f of fields) {
    const clash = byEnv.get(f.envVar)
    if (clash) {
      throw new TypeError(
        `config schema: ${clash.path.join('.')} and ${f.path.join('.')} both map to ${f.envVar}`,
      )
    }
    byEnv.set(f.envVar, f)
  }
  const byPath = new Map(fields.map((f) => [f.path.join('.'), f]))
  type Config = z.output<S>

  return {
    schema,
    envPrefix,
    load(opts: LoadOptions<z.input<S>> = {}): Config {
      return loadConfig(root, schema, opts) as Config
    },
    defaults(): Config {
      return loadConfig(root, schema, { env: {} as Env }) as Config
    },
    toYaml(): string {
      return writeYaml(root, {
        title,
        envPrefix,
        exampleField: fields.find((f) => f.path.length > 1),
      })
    },
    envVarFor(path: string): string {
      const f = byPath.get(path)
      if (!f) throw new TypeError(`config: no field ${path}`)
      return f.envVar
    },
    fields(): readonly ConfigField[] {
      return fields
    },
    redact(config: Config): Config {
      const out: Record<string, unknown> = { ...(config as Record<string, unknown>) }
      for (const f of fields) {
        if (!f.secret) continue
        let parent = out
        for (const seg of f.path.slice(0, -1)) {
          const copy = { ...(parent[seg] as Record<string, unknown>) }
          parent[seg] = copy
          parent = copy
        }
        const v = parent[f.key]
        if (v !== undefined && v !== null && v !== '') parent[f.key] = REDACTED
      }
      return out as Config
    },
  }
}
