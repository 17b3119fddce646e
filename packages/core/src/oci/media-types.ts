// Media types of the OCI image spec and of Docker's image manifest v2.

export const OCI_IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_IMAGE_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_DESCRIPTOR = 'application/vnd.oci.descriptor.v1+json'
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json'

export const OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar'
export const OCI_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const OCI_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
// Deprecated by the image spec, yet still found in images built for Windows.
export const OCI_LAYER_NONDISTRIBUTABLE_TAR =
  'application/vnd.oci.image.layer.nondistributable.v1.tar'
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'
export const OCI_LAYER_NONDISTRIBUTABLE_TAR_ZSTD =
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'

export const DOCKER_MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const DOCKER_CONTAINER_CONFIG = 'application/vnd.docker.container.image.v1+json'
export const DOCKER_LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
export const DOCKER_FOREIGN_LAYER_TAR_GZIP =
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'
// Schema 1 is long deprecated; named only so that it can be recognised and refused.
export const DOCKER_MANIFEST_V1 = 'application/vnd.docker.distribution.manifest.v1+json'
export const DOCKER_MANIFEST_V1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws'

/** Single-image manifests, OCI first. */
export const IMAGE_MANIFEST_MEDIA_TYPES: readonly string[] = [
  OCI_IMAGE_MANIFEST,
  DOCKER_MANIFEST_V2,
]
/** Multi-platform indexes, OCI first. */
export const INDEX_MEDIA_TYPES: readonly string[] = [OCI_IMAGE_INDEX, DOCKER_MANIFEST_LIST]
/** Every manifest media type a registry stores and serves under /manifests/. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  ...IMAGE_MANIFEST_MEDIA_TYPES,
  ...INDEX_MEDIA_TYPES,
]

/**
 * The bare media type of a Content-Type or Accept value: parameters dropped, lower-cased
 * (media types compare case-insensitively, RFC 9110 §8.3.1).
 */
export function mediaTypeEssence(value: string): string {
  const semicolon = value.indexOf(';')
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase()
}

/** True for a single-image manifest (OCI image manifest or Docker schema 2). */
export function isManifestMediaType(value: string): boolean {
  return IMAGE_MANIFEST_MEDIA_TYPES.includes(mediaTypeEssence(value))
}

/** True for an image index (OCI image index or Docker manifest list). */
export function isIndexMediaType(value: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mediaTypeEssence(value))
}
