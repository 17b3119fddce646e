import { stringify } from 'yaml'
import { type ConfigField, type ConfigNode, type ConfigSection, formatDuration } from './schema.ts'

const WIDTH = 90

export interface YamlHeader {
  readonly title: string | undefined
  readonly envPrefix: string
  /** A field to show the environment naming rule with. */
  readonly exampleField: ConfigField | undefined
}

function wrap(text: string, width: number): string[] {
  const out: string[] = []
  for (const paragraph of text.split('\n')) {
    let line = ''
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        out.push(line)
        line = word
      } else {
        line = line ? `${line} ${word}` : word
      }
    }
    out.push(line)
  }
  return out
}

function comments(pad: string, texts: readonly string[]): string[] {
  const width = Math.max(40, WIDTH - pad.length - 2)
  return texts.flatMap((t) => wrap(t, width)).map((l) => (l ? `${pad}# ${l}` : `${pad}#`))
}

function isEmpty(v: unknown): boolean {
  return v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)
}

/** `key: value` lines, as the yaml library writes a one-key mapping, indented by `pad`. */
function entry(pad: string, key: string, value: unknown): string[] {
  const text = stringify({ [key]: value }, { lineWidth: 0 }).trimEnd()
  return text.split('\n').map((l) => `${pad}${l}`)
}

function showValue(field: ConfigField, v: unknown): unknown {
  return field.duration && typeof v === 'number' ? formatDuration(v) : v
}

function hints(field: ConfigField): string[] {
  const out: string[] = []
  if (field.enumValues) out.push(`One of: ${field.enumValues.map((v) => String(v)).join(', ')}.`)
  if (field.duration) out.push('A duration: seconds, or a number with s, m, h or d (90s, 5m, 1h).')
  if (field.min !== undefined && field.max !== undefined) {
    out.push(`From ${field.min} to ${field.max}.`)
  } else if (field.min !== undefined) {
    out.push(`At least ${field.min}.`)
  } else if (field.max !== undefined) {
    out.push(`At most ${field.max}.`)
  }
  if (field.itemFields) {
    out.push('Each entry has:')
    for (const f of field.itemFields)
      out.push(`- ${f.key}${f.description ? `: ${f.description}` : ''}`)
  }
  if (field.secret) {
    out.push(`Secret: prefer setting ${field.envVar} to writing it here.`)
  } else {
    const how =
      field.envKind === 'list' ? ' (comma-separated)' : field.envKind === 'json' ? ' (JSON)' : ''
    out.push(`Env: ${field.envVar}${how}`)
  }
  return out
}

function renderField(field: ConfigField, pad: string): string[] {
  const lines = comments(pad, [...(field.description ? [field.description] : []), ...hints(field)])
  const example = field.examples[0]
  if (isEmpty(field.default) && example !== undefined) {
    // Commented out: the key keeps its empty default until someone fills it in.
    const shown = entry('', field.key, showValue(field, example))
    lines.push(...shown.map((l) => `${pad}# ${l}`))
  } else if (field.default === undefined) {
    lines.push(`${pad}# ${field.key}:`)
  } else {
    lines.push(...entry(pad, field.key, showValue(field, field.default)))
  }
  return lines
}

function renderChildren(section: ConfigSection, pad: string): string[] {
  const lines: string[] = []
  section.children.forEach((child: ConfigNode, i) => {
    if (i > 0 || pad === '') lines.push('')
    if (child.type === 'field') {
      lines.push(...renderField(child, pad))
      return
    }
    lines.push(...comments(pad, child.description ? [child.description] : []))
    lines.push(child.children.length > 0 ? `${pad}${child.key}:` : `${pad}${child.key}: {}`)
    lines.push(...renderChildren(child, `${pad}  `))
  })
  return lines
}

/** The commented YAML `config init` writes: every section and key, in schema order. */
export function writeYaml(root: ConfigSection, header: YamlHeader): string {
  const intro: string[] = []
  if (header.title) intro.push(header.title, '')
  intro.push(
    'Every key is shown with its default; a key left out or commented out keeps its default.',
  )
  const ex = header.exampleField
  intro.push(
    ex
      ? `Each key can also be set by an environment variable named after its path, e.g. ${ex.envVar} for ${ex.path.join('.')}.`
      : `Each key can also be set by an environment variable named after its path, prefixed ${header.envPrefix}_.`,
  )
  return `${[...comments('', intro), ...renderChildren(root, '')].join('\n')}\n`
}
