// The OCI distribution spec grammar for repository names, tags and manifest references.
import { type ParsedDigest, parseDigest } from './digest.ts'
import { OciError } from './errors.ts'
import { quoteInput } from './input.ts'

/** CNCF distribution's limit on a whole repository name, slashes included. */
export const REPOSITORY_NAME_MAX_LENGTH = 255
export const TAG_MAX_LENGTH = 128

const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/

/** Why `name` is not a valid repository name, or undefined when it is. */
export function explainRepositoryName(name: string): string | undefined {
  if (name.length === 0) return 'it is empty'
  if (name.length > REPOSITORY_NAME_MAX_LENGTH) {
    return `it is ${name.length} characters long, the limit is ${REPOSITORY_NAME_MAX_LENGTH}`
  }
  for (const component of name.split('/')) {
    if (COMPONENT.test(component)) continue
    if (component.length === 0) {
      return 'it has an empty path component (leading, trailing or double "/")'
    }
    if (/[A-Z]/.test(component)) return 'it contains uppercase letters'
    if (/[^a-z0-9._-]/.test(component)) {
      return `path component ${quoteInput(component)} contains characters other than a-z, 0-9, ".", "_", "-"`
    }
    return `path component ${quoteInput(component)} must start and end with a letter or digit, and separate them by ".", "_", "__" or dashes`
  }
  return undefined
}

export function isRepositoryName(value: unknown): value is string {
  return typeof value === 'string' && explainRepositoryName(value) === undefined
}

/** Returns `name` when valid, else throws NAME_INVALID saying what is wrong. */
export function assertRepositoryName(name: string): string {
  const problem = explainRepositoryName(name)
  if (problem !== undefined) {
    throw new OciError('NAME_INVALID', {
      message: `invalid repository name ${quoteInput(name)}: ${problem}`,
      detail: { name: name.slice(0, REPOSITORY_NAME_MAX_LENGTH + 1) },
    })
  }
  return name
}

/** Why `tag` is not a valid tag, or undefined when it is. */
export function explainTag(tag: string): string | undefined {
  if (TAG.test(tag)) return undefined
  if (tag.length === 0) return 'it is empty'
  if (tag.length > TAG_MAX_LENGTH) {
    return `it is ${tag.length} characters long, the limit is ${TAG_MAX_LENGTH}`
  }
  if (tag.startsWith('.') || tag.startsWith('-')) return 'it must not start with "." or "-"'
  return 'it may contain only letters, digits, "_", "." and "-"'
}

export function isTag(value: unknown): value is string {
  return typeof value === 'string' && TAG.test(value)
}

/** Returns `tag` when valid, else throws TAG_INVALID saying what is wrong. */
export function assertTag(tag: string): string {
  const problem = explainTag(tag)
  if (problem !== undefined) {
    throw new OciError('TAG_INVALID', {
      message: `invalid tag ${quoteInput(tag)}: ${problem}`,
      detail: { tag: tag.slice(0, TAG_MAX_LENGTH + 1) },
    })
  }
  return tag
}

export type ManifestReference = { kind: 'tag'; tag: string } | ({ kind: 'digest' } & ParsedDigest)

/**
 * The `<reference>` of `/v2/<name>/manifests/<reference>`: a digest when it contains a colon
 * (which no tag may), else a tag. Throws DIGEST_INVALID or TAG_INVALID.
 */
export function parseManifestReference(reference: string): ManifestReference {
  if (reference.includes(':')) return { kind: 'digest', ...parseDigest(reference) }
  return { kind: 'tag', tag: assertTag(reference) }
}
