/**
 * The hold's whole storage layout, in one place. These functions only format strings
 * (checking their inputs so that nothing can escape its folder); drivers store whatever
 * path they are given.
 *
 * ```
 * blobs/<algorithm>/<first two hex>/<hex>/data      a committed blob (distribution's layout)
 * uploads/<uploadId>/data                           an upload assembled before its final move
 * uploads/<uploadId>/parts/<00001..10000>           parts the hold stores itself, if it does
 * ```
 *
 * `deletePrefix(uploadPrefix(id))` removes everything an upload left behind.
 */

import { InvalidPathError } from './errors.ts'

const ALGORITHM = /^[a-z0-9]+$/
const HEX = /^[a-f0-9]{2,}$/
const UPLOAD_ID = /^[A-Za-z0-9_-]{1,128}$/

export function blobPath(algorithm: string, hex: string): string {
  if (!ALGORITHM.test(algorithm)) throw new InvalidPathError(algorithm, 'bad digest algorithm')
  if (!HEX.test(hex)) throw new InvalidPathError(hex, 'digest must be lowercase hex')
  return `blobs/${algorithm}/${hex.slice(0, 2)}/${hex}/data`
}

export function uploadPrefix(uploadId: string): string {
  if (!UPLOAD_ID.test(uploadId)) throw new InvalidPathError(uploadId, 'bad upload id')
  return `uploads/${uploadId}`
}

export function uploadPath(uploadId: string): string {
  return `${uploadPrefix(uploadId)}/data`
}

export function uploadPartPath(uploadId: string, partNumber: number): string {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) {
    throw new InvalidPathError(String(partNumber), 'part numbers run from 1 to 10000')
  }
  return `${uploadPrefix(uploadId)}/parts/${String(partNumber).padStart(5, '0')}`
}
