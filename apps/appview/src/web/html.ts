// Server-rendered HTML: every interpolated value is escaped by the `html` tag; `raw` marks
// markup that is already safe. Pages work without JavaScript.
export class Raw {
  readonly value: string
  constructor(value: string) {
    this.value = value
  }
  toString(): string {
    return this.value
  }
}

export function raw(value: string): Raw {
  return new Raw(value)
}

export function escapeHtml(value: string): string {
  return value
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}

type Value = string | number | Raw | null | undefined | false | readonly Value[]

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return ''
  if (value instanceof Raw) return value.value
  if (Array.isArray(value)) return value.map(render).join('')
  return escapeHtml(String(value))
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Raw {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!
  return new Raw(out)
}

const STYLE = `
body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1f24;background:#fff}
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #d0d7de;margin-bottom:1.5rem}
header a{color:inherit;text-decoration:none;font-weight:600}
form.inline{display:inline}
input[type=text]{font:inherit;padding:.4rem;border:1px solid #8c959f;border-radius:4px;min-width:16rem}
button{font:inherit;padding:.4rem .9rem;border:1px solid #8c959f;border-radius:4px;background:#f6f8fa;cursor:pointer}
button.primary{background:#1f6feb;border-color:#1f6feb;color:#fff}
.code{font-family:ui-monospace,monospace;font-size:1.6rem;letter-spacing:.15rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #d0d7de}
.notice{padding:.6rem;border:1px solid #d0d7de;border-radius:4px;background:#f6f8fa}
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}button{background:#21262d;color:#e6edf3}.notice{background:#161b22}}
`

export interface LayoutOptions {
  title: string
  user?: { did: string; handle: string | null } | null
  csrfToken?: string
}

export function layout(options: LayoutOptions, body: Raw): string {
  const user = options.user
  const nav = user
    ? html`<nav><a href="/settings">${user.handle ?? user.did}</a>
        <form class="inline" method="post" action="/auth/logout">
          <input type="hidden" name="_csrf" value="${options.csrfToken ?? ''}">
          <button type="submit">Sign out</button>
        </form></nav>`
    : html`<nav><a href="/auth/oauth/login">Sign in</a></nav>`
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(options.title)} · ATCR</title><style>${STYLE}</style></head>
<body><header><p><a href="/">ATCR</a></p>${nav}</header><main>${body}</main></body></html>`
}
