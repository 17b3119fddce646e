// fast-check arbitraries for pushed manifests: arbitrary JSON and bytes, valid image manifests
// and indexes, and those mutated (a field replaced, removed or given a wrong type, wrong media
// types, huge lists, deep nesting). Shared by the unit and the HTTP fuzz tests.
import {
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST_V1,
  DOCKER_MANIFEST_V2,
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
} from '@atcr/core/oci'
import { type Json, mutatedJson, weirdJsonValue } from '@atcr/testkit'
import fc from 'fast-check'

const hex64 = fc.string({
  unit: fc.constantFrom(...'0123456789abcdef'.split('')),
  minLength: 64,
  maxLength: 64,
})
export const digestArb = hex64.map((h) => `sha256:${h}`)

export const mediaTypeArb = fc.oneof(
  fc.constantFrom(
    OCI_IMAGE_MANIFEST,
    OCI_IMAGE_INDEX,
    DOCKER_MANIFEST_V2,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST_V1,
    OCI_IMAGE_CONFIG,
    'application/json',
    `${OCI_IMAGE_MANIFEST}; charset=utf-8`,
    'APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON',
    '',
    'text/html',
  ),
  fc.string({ maxLength: 40 }),
)

// atproto data cannot hold a `__proto__` key, so a manifest with one is refused
// (MANIFEST_INVALID), valid OCI though it is: the valid manifests here have none.
const annotationsArb = fc.dictionary(
  fc.string({ maxLength: 10 }).filter((key) => key !== '__proto__'),
  fc.string({ maxLength: 20 }),
  { maxKeys: 3 },
)

const descriptorArb = fc.record(
  {
    mediaType: fc.constantFrom('application/vnd.oci.image.layer.v1.tar+gzip', OCI_IMAGE_CONFIG),
    digest: digestArb,
    size: fc.nat({ max: 1 << 20 }),
    annotations: annotationsArb,
  },
  { requiredKeys: ['mediaType', 'digest', 'size'] },
)

const platformArb = fc.record({
  architecture: fc.constantFrom('amd64', 'arm64'),
  os: fc.constantFrom('linux', 'windows'),
})

export const imageManifestArb: fc.Arbitrary<Json> = fc.record(
  {
    schemaVersion: fc.constant(2),
    mediaType: fc.constant(OCI_IMAGE_MANIFEST),
    config: descriptorArb,
    layers: fc.array(descriptorArb, { maxLength: 4 }),
    annotations: annotationsArb,
    subject: descriptorArb,
  },
  { requiredKeys: ['schemaVersion', 'config', 'layers'] },
) as fc.Arbitrary<Json>

export const indexArb: fc.Arbitrary<Json> = fc.record(
  {
    schemaVersion: fc.constant(2),
    mediaType: fc.constant(OCI_IMAGE_INDEX),
    manifests: fc.array(
      descriptorArb.chain((d) =>
        platformArb.map((platform) => ({ ...d, mediaType: OCI_IMAGE_MANIFEST, platform })),
      ),
      { maxLength: 4 },
    ),
  },
  { requiredKeys: ['schemaVersion', 'manifests'] },
) as fc.Arbitrary<Json>

const FIELD_NAMES = ['config', 'manifests', 'layers', 'subject', 'platform', 'urls', 'x']

/** A valid manifest or index with one to three fields replaced, removed or added. */
export const mutatedManifestArb: fc.Arbitrary<Json> = mutatedJson(
  fc.oneof(imageManifestArb, indexArb),
  {
    names: FIELD_NAMES,
    values: fc.oneof(weirdJsonValue, mediaTypeArb),
  },
)

/** Manifest bytes of every kind: valid, mutated, arbitrary JSON, arbitrary bytes, nesting. */
export const manifestBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: mutatedManifestArb.map(encode), weight: 5 },
  { arbitrary: fc.oneof(imageManifestArb, indexArb).map(encode), weight: 1 },
  { arbitrary: fc.jsonValue({ maxDepth: 4 }).map(encode), weight: 2 },
  { arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 1 },
  {
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 5000 }), fc.constantFrom('[', '{"a":'))
      .map(([depth, open]) =>
        Buffer.from(`${open.repeat(depth)}1${(open === '[' ? ']' : '}').repeat(depth)}`),
      ),
    weight: 1,
  },
)

export function encode(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value))
}

/** An image manifest with `count` layers, for the huge-list cases. */
export function manifestWithLayers(count: number, digest: string): Uint8Array {
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: 1 }
  return encode({
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: { mediaType: OCI_IMAGE_CONFIG, digest, size: 1 },
    layers: Array.from({ length: count }, () => layer),
  })
}
