// READMEs are Markdown written by anyone who can push: rendered with marked, then
// sanitized with sanitize-html to an allowlist (no scripts, styles, event handlers, frames
// or javascript: URLs), so a hostile README is text on the page, never code.
import { Marked } from 'marked'
import sanitizeHtml from 'sanitize-html'

const marked = new Marked({ gfm: true, async: false })

const ALLOWED: sanitizeHtml.IOptions = {
  allowedTags: [...sanitizeHtml.defaults.allowedTags.filter((tag) => tag !== 'h1'), 'img', 'del'],
  allowedAttributes: {
    a: ['href', 'title'],
    img: ['src', 'alt', 'title', 'width', 'height'],
    code: ['class'],
    th: ['align'],
    td: ['align'],
  },
  allowedSchemes: ['https', 'http', 'mailto'],
  allowedSchemesByTag: { img: ['https', 'data'] },
  allowedClasses: { code: [/^language-[\w-]+$/] },
  // A README's own h1 would compete with the page's: headings move one level down.
  transformTags: {
    h1: 'h2',
    a: sanitizeHtml.simpleTransform('a', { rel: 'nofollow ugc noopener' }),
    // An image without alternative text is taken as decorative (screen readers skip it).
    img: (tagName, attribs) => ({ tagName, attribs: { alt: '', ...attribs } }),
  },
}

/** Markdown as safe HTML. */
export function renderMarkdown(markdown: string): string {
  return sanitizeHtml(marked.parse(markdown) as string, ALLOWED)
}
