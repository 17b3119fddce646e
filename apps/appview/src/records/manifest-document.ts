// A pushed manifest read for what the registry must check and record: its kind, the
// blobs or child manifests it references, and its subject. The bytes themselves are kept
// verbatim elsewhere; nothing here rewrites them.
import {
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V1_SIGNED,
  DOCKER_MANIFEST_V2,
  isIndexMediaType,
  isManifestMediaType,
  mediaTypeEssence,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  OciError,
  parseDigest,
} from '@atcr/core/oci'

export interface OciDescriptor {
  mediaType: string
  digest: string
  size: number
  urls?: string[]
  annotations?: Record<string, string>
  artifactType?: string
  platform?: OciPlatform
}

export interface OciPlatform {
  architecture: string
  os: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

export interface ManifestDocument {
  kind: 'image' | 'index'
  mediaType: string
  schemaVersion: number
  artifactType?: string
  config?: OciDescriptor
  layers: OciDescriptor[]
  manifests: OciDescriptor[]
  subject?: OciDescriptor
  annotations?: Record<string, string>
}

function invalid(message: string): OciError {
  return new OciError('MANIFEST_INVALID', { message })
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw invalid(`${where}.annotations must map strings to strings`)
  }
  return value as Record<string, string>
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalid(`${where} must be a string`)
  return value
}

function descriptor(value: unknown, where: string): OciDescriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`)
  const { mediaType, digest, size, urls, annotations, artifactType, platform } = value
  if (typeof mediaType !== 'string' || mediaType === '') {
    throw invalid(`${where}.mediaType must be a non-empty string`)
  }
  if (typeof digest !== 'string') throw invalid(`${where}.digest must be a string`)
  try {
    parseDigest(digest)
  } catch (error) {
    throw invalid(`${where}.digest: ${(error as Error).message}`)
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`)
  }
  const result: OciDescriptor = { mediaType, digest, size }
  if (urls !== undefined) {
    if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string')) {
      throw invalid(`${where}.urls must be a list of strings`)
    }
    result.urls = urls as string[]
  }
  const map = stringMap(annotations, where)
  if (map) result.annotations = map
  const type = optionalString(artifactType, `${where}.artifactType`)
  if (type !== undefined) result.artifactType = type
  if (platform !== undefined) result.platform = parsePlatform(platform, `${where}.platform`)
  return result
}

function parsePlatform(value: unknown, where: string): OciPlatform {
  if (!isObject(value)) throw invalid(`${where} must be an object`)
  const { architecture, os, variant } = value
  if (typeof architecture !== 'string' || typeof os !== 'string') {
    throw invalid(`${where} needs architecture and os strings`)
  }
  const platform: OciPlatform = { architecture, os }
  const v = optionalString(variant, `${where}.variant`)
  if (v !== undefined) platform.variant = v
  const osVersion = optionalString(value['os.version'], `${where}.os.version`)
  if (osVersion !== undefined) platform['os.version'] = osVersion
  const features = value['os.features']
  if (features !== undefined) {
    if (!Array.isArray(features) || !features.every((f) => typeof f === 'string')) {
      throw invalid(`${where}.os.features must be a list of strings`)
    }
    platform['os.features'] = features as string[]
  }
  return platform
}

function descriptorList(value: unknown, where: string): OciDescriptor[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw invalid(`${where} must be a list`)
  return value.map((entry, i) => descriptor(entry, `${where}[${i}]`))
}

/**
 * Reads manifest bytes pushed with `contentType`. The media type comes from the document's
 * `mediaType` field, else from the Content-Type; when both are given they must agree.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | undefined,
): ManifestDocument {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw invalid('the manifest is not valid JSON')
  }
  if (!isObject(json)) throw invalid('the manifest must be a JSON object')
  const declared = json.mediaType
  if (declared !== undefined && typeof declared !== 'string') {
    throw invalid('mediaType must be a string')
  }
  const header = contentType ? mediaTypeEssence(contentType) : undefined
  let mediaType = declared ?? header
  if (
    declared !== undefined &&
    header !== undefined &&
    header !== '' &&
    mediaTypeEssence(declared) !== header &&
    header !== 'application/json' &&
    header !== 'application/octet-stream'
  ) {
    throw invalid(`the manifest's mediaType ${declared} differs from its Content-Type ${header}`)
  }
  if (mediaType === undefined || mediaType === 'application/json' || mediaType === '') {
    // Neither says: an index has `manifests`, an image manifest has `config`.
    mediaType = Array.isArray(json.manifests) ? OCI_IMAGE_INDEX : OCI_IMAGE_MANIFEST
  }
  if (mediaType === DOCKER_MANIFEST_V1 || mediaType === DOCKER_MANIFEST_V1_SIGNED) {
    throw invalid('Docker schema 1 manifests are not supported; push schema 2 or OCI')
  }
  const schemaVersion = json.schemaVersion
  if (schemaVersion !== 2) throw invalid('schemaVersion must be 2')

  const artifactType = optionalString(json.artifactType, 'artifactType')
  const annotations = stringMap(json.annotations, 'manifest')
  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject')
  const base = { mediaType, schemaVersion, artifactType, annotations, subject }

  if (isManifestMediaType(mediaType)) {
    if (json.manifests !== undefined) throw invalid('an image manifest cannot list manifests')
    if (json.config === undefined) throw invalid('an image manifest needs a config descriptor')
    return {
      ...base,
      kind: 'image',
      config: descriptor(json.config, 'config'),
      layers: descriptorList(json.layers, 'layers'),
      manifests: [],
    }
  }
  if (isIndexMediaType(mediaType)) {
    if (json.config !== undefined || json.layers !== undefined) {
      throw invalid('an image index cannot have a config or layers')
    }
    if (!Array.isArray(json.manifests)) throw invalid('an image index needs a manifests list')
    return {
      ...base,
      kind: 'index',
      layers: [],
      manifests: descriptorList(json.manifests, 'manifests'),
    }
  }
  throw invalid(
    `unsupported manifest media type ${mediaType}; supported: ${[OCI_IMAGE_MANIFEST, OCI_IMAGE_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST].join(', ')}`,
  )
}

/**
 * The artifactType a referrers listing shows for a manifest: its own, else (for an image
 * manifest) its config's media type, as the distribution spec says.
 */
export function artifactTypeOf(document: ManifestDocument): string | undefined {
  return document.artifactType ?? document.config?.mediaType
}

const FOREIGN_LAYER = /(\.foreign\.|\.nondistributable\.)/

/**
 * The blobs a manifest needs in storage before it may be pushed: config and layers, except
 * layers meant to be fetched from elsewhere (foreign or non-distributable layers with urls).
 */
export function requiredBlobs(document: ManifestDocument): OciDescriptor[] {
  const blobs = document.config ? [document.config] : []
  for (const layer of document.layers) {
    if (layer.urls && layer.urls.length > 0 && FOREIGN_LAYER.test(layer.mediaType)) continue
    blobs.push(layer)
  }
  const seen = new Set<string>()
  return blobs.filter((blob) => !seen.has(blob.digest) && seen.add(blob.digest))
}
