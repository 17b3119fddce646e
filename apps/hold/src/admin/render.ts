// Admin pages are Eta templates (views/), rendered on the server and escaped by default;
// each page gets a fresh CSRF token for its forms and is never cached.
import type { FastifyReply } from 'fastify'

export interface PageData {
  title: string
  /** The signed-in admin (nav and sign-out form), or null on sign-in and refusal pages. */
  user: { did: string; handle: string | null } | null
  /** Which nav entry is current. */
  section?: 'overview' | 'crew' | 'settings' | 'maintenance'
  /** Seconds after which the page reloads itself (a running GC), without JavaScript. */
  refresh?: number
  [key: string]: unknown
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** Helpers the templates call. */
export const format = {
  bytes(n: number): string {
    let value = n
    let unit = 0
    while (value >= 1024 && unit < UNITS.length - 1) {
      value /= 1024
      unit += 1
    }
    return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${UNITS[unit]}`
  },
  count(n: number): string {
    return n.toLocaleString('en-US')
  },
  duration(seconds: number): string {
    if (seconds % 86400 === 0) return `${seconds / 86400} d`
    if (seconds % 3600 === 0) return `${seconds / 3600} h`
    return `${seconds} s`
  },
}

export async function renderPage(reply: FastifyReply, template: string, data: PageData) {
  const csrfToken = reply.generateCsrf()
  const html = await reply.viewAsync(template, {
    section: null,
    refresh: null,
    ...data,
    csrfToken,
    format,
  })
  return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(html)
}
