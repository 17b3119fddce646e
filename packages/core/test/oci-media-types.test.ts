import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  DOCKER_CONTAINER_CONFIG,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1_SIGNED,
  DOCKER_MANIFEST_V2,
  isIndexMediaType,
  isManifestMediaType,
  MANIFEST_MEDIA_TYPES,
  mediaTypeEssence,
  OCI_EMPTY,
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_TAR_ZSTD,
} from '@atcr/core/oci'

test('the media types clients send and expect', () => {
  assert.equal(OCI_IMAGE_MANIFEST, 'application/vnd.oci.image.manifest.v1+json')
  assert.equal(OCI_IMAGE_INDEX, 'application/vnd.oci.image.index.v1+json')
  assert.equal(OCI_EMPTY, 'application/vnd.oci.empty.v1+json')
  assert.equal(OCI_LAYER_TAR_ZSTD, 'application/vnd.oci.image.layer.v1.tar+zstd')
  assert.equal(DOCKER_MANIFEST_V2, 'application/vnd.docker.distribution.manifest.v2+json')
  assert.equal(DOCKER_MANIFEST_LIST, 'application/vnd.docker.distribution.manifest.list.v2+json')
})

test('image manifests and indexes are told apart', () => {
  assert.equal(isManifestMediaType(OCI_IMAGE_MANIFEST), true)
  assert.equal(isManifestMediaType(DOCKER_MANIFEST_V2), true)
  assert.equal(isManifestMediaType(OCI_IMAGE_INDEX), false)
  assert.equal(isIndexMediaType(OCI_IMAGE_INDEX), true)
  assert.equal(isIndexMediaType(DOCKER_MANIFEST_LIST), true)
  assert.equal(isIndexMediaType(OCI_IMAGE_MANIFEST), false)
  assert.deepEqual(
    MANIFEST_MEDIA_TYPES.toSorted(),
    [DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2, OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST].toSorted(),
  )
})

test('configs, layers and schema 1 are not manifests', () => {
  for (const type of [
    OCI_IMAGE_CONFIG,
    DOCKER_CONTAINER_CONFIG,
    DOCKER_LAYER_TAR_GZIP,
    OCI_EMPTY,
    DOCKER_MANIFEST_V1_SIGNED,
    '',
  ]) {
    assert.equal(isManifestMediaType(type), false, type)
    assert.equal(isIndexMediaType(type), false, type)
  }
})

test('a Content-Type with parameters or other case still names its media type', () => {
  const header = 'Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8'
  assert.equal(mediaTypeEssence(header), OCI_IMAGE_MANIFEST)
  assert.equal(isManifestMediaType(header), true)
})
