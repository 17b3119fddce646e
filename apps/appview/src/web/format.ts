// How the pages write numbers, times and digests (the templates' `fmt`).

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB']

/** 1234567 → "1.2 MB" (decimal units, as registries show compressed sizes). */
export function bytes(size: number | null | undefined): string {
  if (size === null || size === undefined || !Number.isFinite(size)) return '–'
  let value = size
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`
}

/** An ISO time or Unix milliseconds as `2026-12-04 21:05 UTC`. */
export function date(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return 'never'
  const time = new Date(value)
  if (Number.isNaN(time.getTime())) return String(value)
  return `${time.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}

/** `sha256:0123456789ab…` → `0123456789ab` (what people compare by eye). */
export function shortDigest(digest: string): string {
  const hex = digest.slice(digest.indexOf(':') + 1)
  return hex.slice(0, 12)
}

/** `linux/arm64/v8` */
export function platform(p: { os: string; architecture: string; variant?: string }): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}

export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`
}

/** The clients pull commands can be written for (io.atcr.sailor.profile ociClient). */
export const OCI_CLIENTS = ['docker', 'podman', 'buildah', 'nerdctl', 'crane', 'none'] as const

/** The command that pulls `reference` with the viewer's client ('none': the bare reference). */
export function pullCommand(reference: string, client: string | null): string {
  switch (client) {
    case 'none':
      return reference
    case 'crane':
      return `crane pull ${reference} image.tar`
    case 'podman':
    case 'buildah':
    case 'nerdctl':
      return `${client} pull ${reference}`
    default:
      return `docker pull ${reference}`
  }
}

export const fmt = { bytes, date, shortDigest, platform, count }
