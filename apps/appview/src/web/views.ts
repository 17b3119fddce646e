// The page foundation: Eta templates (views/) through @fastify/view, security headers and a
// Content-Security-Policy without inline scripts (@fastify/helmet), static assets
// (@fastify/static) under /static/ with long-lived cache headers (their URLs carry a hash of
// the files), and the one HTML error page writer.
//
// Eta because it escapes every `<%= %>` by default (`<%~ %>` marks markup already safe),
// is small, has no dependencies, and templates are plain JavaScript expressions: no second
// language to learn for loops and conditions.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import helmet from '@fastify/helmet'
import fastifyStatic from '@fastify/static'
import view from '@fastify/view'
import { Eta } from 'eta'
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { WebUser } from '../auth/web-sessions.ts'
import { fmt } from './format.ts'

const VIEWS_DIR = fileURLToPath(new URL('../../views/', import.meta.url))
const STATIC_DIR = fileURLToPath(new URL('../../static/', import.meta.url))

/** A short hash of every static file: it changes whenever one does, so URLs can be cached. */
function assetVersion(): string {
  const hash = createHash('sha256')
  for (const file of readdirSync(STATIC_DIR).sort()) {
    hash.update(file).update(readFileSync(`${STATIC_DIR}${file}`))
  }
  return hash.digest('hex').slice(0, 12)
}

/** What every page's layout reads besides the page's own data. */
export interface PageFrame {
  title: string
  user: WebUser | null
  /** For the sign-out form (and every other form on the page); set for signed-in users. */
  csrfToken: string | undefined
  /** The search box's text. */
  query?: string
  /** The home page has a search box of its own. */
  hideSearch?: boolean
}

export async function registerViews(
  app: FastifyInstance,
  options: { secure: boolean; production: boolean },
): Promise<void> {
  const version = assetVersion()
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        // README images may come from anywhere on the web (as on other registries).
        imgSrc: ["'self'", 'data:', 'https:'],
        // Signing in submits a form that is redirected to the user's own PDS.
        formAction: ["'self'", options.secure ? 'https:' : '*'],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
        ...(options.secure ? { upgradeInsecureRequests: [] } : {}),
      },
    },
    // Sign-in goes through the user's PDS and back: the default (same-origin) would drop
    // the referrer's origin some PDS pages show; this keeps it to the origin.
    referrerPolicy: { policy: 'strict-origin-when-cross-origin' },
    strictTransportSecurity: options.secure,
  })
  await app.register(fastifyStatic, {
    root: STATIC_DIR,
    prefix: '/static/',
    immutable: true,
    maxAge: '365d',
    index: false,
    list: false,
  })
  await app.register(view, {
    engine: { eta: new Eta({ views: VIEWS_DIR, cache: options.production }) },
    root: VIEWS_DIR,
    production: options.production,
    defaultContext: {
      asset: (file: string) => `/static/${file}?v=${version}`,
      fmt,
    },
  })
}

/** Renders a page (views/<name>.eta in the layout) as an uncacheable HTML answer. */
export async function sendPage(
  reply: FastifyReply,
  name: string,
  frame: PageFrame,
  data: Record<string, unknown> = {},
): Promise<FastifyReply> {
  const body = await reply.viewAsync(name, { ...data, frame })
  return reply
    .type('text/html; charset=utf-8')
    .header('cache-control', frame.user ? 'private, no-store' : 'no-cache')
    .send(body)
}

/** The HTML error page: the one way pages answer a failure. */
export function sendErrorPage(
  reply: FastifyReply,
  status: number,
  message: string,
  frame: Omit<PageFrame, 'title'> = { user: null, csrfToken: undefined },
): Promise<FastifyReply> {
  const title = status === 404 ? 'Not found' : status >= 500 ? 'Server error' : 'Request refused'
  return sendPage(reply.code(status), 'error', { ...frame, title }, { status, message })
}
