// The admin pages' one stylesheet (served from /admin/static/admin.css: the CSP allows no
// inline styles). Colours follow the system's light or dark setting; contrast meets WCAG AA.
export const STYLESHEET = `
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--panel:#f6f8fa;--accent:#0a58ca;--accent-fg:#ffffff;--ok:#116329;--bad:#a40e26}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;--panel:#161b22;--accent:#4493f8;--accent-fg:#0d1117;--ok:#3fb950;--bad:#ff7b72}}
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;line-height:1.5;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,summary:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--panel);padding:.5rem}
header{display:flex;flex-wrap:wrap;gap:1rem;justify-content:space-between;align-items:center;padding:.5rem 1.5rem;border-bottom:1px solid var(--line);background:var(--panel)}
header .brand{font-weight:700;margin:0}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:1rem;margin:0;padding:0}
nav a{text-decoration:none;color:var(--fg);padding:.25rem .1rem}
nav a[aria-current=page]{border-bottom:3px solid var(--accent);font-weight:600}
main{max-width:72rem;margin:1.5rem auto;padding:0 1.5rem}
h1{font-size:1.6rem;margin-top:0}
h2{font-size:1.2rem;margin-top:2rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:1rem;padding:0;list-style:none}
.cards li{border:1px solid var(--line);border-radius:6px;padding:.8rem;background:var(--panel)}
.cards .value{display:block;font-size:1.4rem;font-weight:700}
.muted,.hint{color:var(--muted)}
.hint{font-size:.9rem}
table{border-collapse:collapse;width:100%}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{text-align:left;padding:.4rem;border-bottom:1px solid var(--line);vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.did{font-family:ui-monospace,monospace;font-size:.85rem;word-break:break-all}
form.inline{display:inline}
fieldset{border:1px solid var(--line);border-radius:6px;margin:0 0 1rem}
label{margin-right:.8rem}
input[type=text],select{font:inherit;color:var(--fg);background:var(--bg);padding:.35rem;border:1px solid var(--muted);border-radius:4px}
input[type=text]{min-width:16rem}
button{font:inherit;padding:.35rem .9rem;border:1px solid var(--muted);border-radius:4px;background:var(--panel);color:var(--fg);cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:var(--accent-fg)}
button.danger{border-color:var(--bad);color:var(--bad)}
.notice{padding:.6rem .8rem;border:1px solid var(--line);border-left:4px solid var(--accent);border-radius:4px;background:var(--panel)}
.notice.ok{border-left-color:var(--ok)}.notice.error{border-left-color:var(--bad)}
progress{width:100%;max-width:30rem}
details{margin:.3rem 0}
`
