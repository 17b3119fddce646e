// The Markdown report of a pass: the machine, the physical limits, one row per scenario
// metric (medians and ranges of both registries and their ratio), what the servers spent
// per scenario, memory, and every error.
import { execFileSync } from 'node:child_process'
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os'
import { distributionVersion } from '../lib/distribution.ts'
import type { Limits } from './limits.ts'
import type { Options } from './options.ts'
import type { Metric, Scenario } from './scenarios.ts'
import type { Usage } from './watch.ts'

export type TargetKey = 'atcr' | 'distribution'
const KEYS: TargetKey[] = ['atcr', 'distribution']

export interface ScenarioResult {
  scenario: Scenario
  /** Per metric, per target: one value per successful run. */
  values: Record<string, Record<TargetKey, number[]>>
  usage: Record<TargetKey, Usage[]>
  /** Runs that failed, with why. */
  failures: Record<TargetKey, string[]>
  /** Failures counted inside runs (e.g. refused pulls), and a few of their messages. */
  counted: Record<TargetKey, number>
  countedSamples: Record<TargetKey, string[]>
}

export interface MemoryRow {
  target: string
  process: string
  idleMiB: number
  /** After the image the burst pulls was pushed, just before the burst. */
  beforeBurstMiB: number
  afterBurstMiB: number
  peakMiB: number
}

export interface MemoryResult {
  settleSeconds: number
  pulls: number
  burstErrors: Record<TargetKey, number>
  rows: MemoryRow[]
}

export interface Machine {
  date: string
  commit: string
  /** Uncommitted files under apps/ and packages/ (measured as they are in the tree). */
  uncommitted: number
  nproc: number
  memoryGiB: number
  kernel: string
  node: string
  cpu: string
  distribution: string
  loadStart: number[]
}

export function describeMachine(root: string): Machine {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim()
    } catch {
      return ''
    }
  }
  const status = git('status', '--porcelain', '--', 'apps', 'packages')
  return {
    date: new Date().toISOString().slice(0, 10),
    commit: git('rev-parse', '--short', 'HEAD') || 'unknown',
    uncommitted: status ? status.split('\n').length : 0,
    nproc: availableParallelism(),
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: release(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    distribution: distributionVersion(),
    loadStart: loadavg(),
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const fmt = (value: number) =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)

function cell(values: number[], unit: string): string {
  if (values.length === 0) return '—'
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  return `${fmt(median(values))} ${unit} (${fmt(lo)}–${fmt(hi)})`
}

function throughput(metric: Metric, a: number[], b: number[]): string {
  if (!metric.bytes || metric.unit !== 's') return ''
  const mibps = (values: number[]) =>
    values.length ? fmt(metric.bytes! / 1024 ** 2 / median(values)) : '—'
  return `${mibps(a)} / ${mibps(b)}`
}

const mibps = (values: number[]) =>
  `${fmt(median(values))} MiB/s (${fmt(Math.min(...values))}–${fmt(Math.max(...values))})`

export function renderReport(input: {
  options: Options
  storage: 'filesystem' | 's3'
  machine: Machine
  limits: Limits | null
  results: ScenarioResult[]
  memory: MemoryResult | null
  problems: { count: number; samples: string[] }
  seconds: number
  command: string
}): string {
  const { options, storage, machine, limits, results, memory, problems } = input
  const out: string[] = []
  out.push(`# ATCR vs CNCF Distribution, side by side (${storage} storage)`)
  out.push('')
  out.push(
    `\`${input.command}\` — ${machine.date}, commit ${machine.commit}` +
      (machine.uncommitted
        ? ` plus ${machine.uncommitted} uncommitted file(s) under apps/ and packages/`
        : '') +
      `, ${options.runs} runs per scenario on each, which goes first alternating, a sync before each timed part; this pass took ${(input.seconds / 60).toFixed(1)} min.`,
  )
  out.push('')
  out.push('| machine | |')
  out.push('|---|---|')
  out.push(`| CPU | ${machine.cpu}, nproc ${machine.nproc} |`)
  out.push(`| memory | ${machine.memoryGiB.toFixed(1)} GiB |`)
  out.push(`| kernel | ${machine.kernel} |`)
  out.push(`| Node | ${machine.node} |`)
  out.push(`| Distribution | ${machine.distribution} (filesystem storage, no auth) |`)
  out.push(
    `| ATCR | AppView + hold (${storage === 's3' ? 's3 driver on s3rver, presigned redirects' : 'filesystem driver'}) + PLC/PDS${storage === 's3' ? ' + s3rver' : ''}, each its own process, ${options.installed ? "installed from scripts/build's npm packages (compiled JavaScript, as deployed)" : "run from the checkout's TypeScript"}, dev mode, ${options.index ? 'ingest on (the PDS firehose: listings from the index)' : 'ingest off (listings read the PDS)'} |`,
  )
  out.push(`| load average at start | ${machine.loadStart.map((l) => l.toFixed(2)).join(' ')} |`)
  out.push('')
  if (limits) {
    out.push(`Physical limits (${limits.mib} MiB, median of ${limits.sha256.length}, min–max):`)
    out.push('')
    out.push('| limit | throughput |')
    out.push('|---|---|')
    out.push(`| sha256, Node, one core | ${mibps(limits.sha256)} |`)
    out.push(`| loopback HTTP (curl -T → bare node:http) | ${mibps(limits.loopbackHttp)} |`)
    out.push(`| disk write + fdatasync | ${mibps(limits.diskFdatasync)} |`)
    out.push('')
  }
  out.push(
    'Ratio = ATCR median / Distribution median: above 1 ATCR takes longer. MiB/s from the medians.',
  )
  out.push('')
  out.push(
    '| scenario | ATCR median (min–max) | Distribution median (min–max) | ATCR / Distribution | MiB/s ATCR / Distribution | failed runs or errors (ATCR / Distribution) |',
  )
  out.push('|---|---|---|---|---|---|')
  for (const result of results) {
    for (const metric of result.scenario.metrics) {
      const a = result.values[metric.name]?.atcr ?? []
      const b = result.values[metric.name]?.distribution ?? []
      const ratio = a.length && b.length ? `**${(median(a) / median(b)).toFixed(2)}**` : '—'
      const errors = KEYS.map((k) => result.failures[k].length + result.counted[k]).join(' / ')
      const name =
        result.scenario.metrics.length > 1
          ? `${result.scenario.name} ${metric.name}`
          : result.scenario.name
      out.push(
        `| ${name} | ${cell(a, metric.unit)} | ${cell(b, metric.unit)} | ${ratio} | ${throughput(metric, a, b)} | ${errors} |`,
      )
    }
  }
  out.push('')
  out.push('What each row measures:')
  out.push('')
  for (const result of results) {
    for (const metric of result.scenario.metrics) {
      out.push(
        `- ${result.scenario.name}${result.scenario.metrics.length > 1 ? ` ${metric.name}` : ''}: ${metric.what}`,
      )
    }
  }
  out.push('')
  const names = [
    ...new Set(results.flatMap((r) => r.usage.atcr.flatMap((u) => Object.keys(u.cpu)))),
  ]
  out.push(
    `Server resources per run during the timed part (CPU = utime + stime, median per run, with the kernel's part (stime) in brackets; peak RSS = highest of the runs, MiB). ATCR processes: ${names.join(' / ')}.`,
  )
  out.push('')
  out.push(
    '| scenario | ATCR CPU s | ATCR CPU total | ATCR peak RSS | Distribution CPU s | Distribution peak RSS |',
  )
  out.push('|---|---|---|---|---|---|')
  for (const result of results) {
    const cpu = (usages: Usage[], name: string) =>
      `${fmt(median(usages.map((u) => u.cpu[name] ?? 0)))} (${fmt(median(usages.map((u) => u.kernel[name] ?? 0)))})`
    const peak = (usages: Usage[], name: string) =>
      Math.max(0, ...usages.map((u) => u.peakMiB[name] ?? 0))
    const a = result.usage.atcr
    const b = result.usage.distribution
    if (!a.length && !b.length) continue
    const total = median(a.map((u) => Object.values(u.cpu).reduce((s, v) => s + v, 0)))
    out.push(
      `| ${result.scenario.name} | ${names.map((n) => cpu(a, n)).join(' / ')} | ${fmt(total)} | ${names.map((n) => peak(a, n).toFixed(0)).join(' / ')} | ${b.length ? cpu(b, 'registry') : '—'} | ${b.length ? peak(b, 'registry').toFixed(0) : '—'} |`,
    )
  }
  out.push('')
  if (memory) {
    out.push(
      `Memory (RSS, MiB): idle after start, after pushing the image the burst pulls (just before the burst; the first sign-in and push load code and grow heaps that stay), peak over the whole pass, and ${memory.settleSeconds} s after a burst of ${memory.pulls} concurrent pulls (burst errors ATCR ${memory.burstErrors.atcr}, Distribution ${memory.burstErrors.distribution}).`,
    )
    out.push('')
    out.push(
      '| process | idle | before burst | peak (pass) | after burst | within 20% of idle | left by the burst (after − before) |',
    )
    out.push('|---|---|---|---|---|---|---|')
    const percent = (now: number, then: number) =>
      `${now >= then ? '+' : ''}${((now / then - 1) * 100).toFixed(0)}%`
    for (const row of memory.rows) {
      const within = row.afterBurstMiB <= row.idleMiB * 1.2
      const left = row.afterBurstMiB - row.beforeBurstMiB
      out.push(
        `| ${row.target} ${row.process} | ${row.idleMiB.toFixed(0)} | ${row.beforeBurstMiB.toFixed(0)} | ${row.peakMiB.toFixed(0)} | ${row.afterBurstMiB.toFixed(0)} | ${within ? 'yes' : `**no** (${percent(row.afterBurstMiB, row.idleMiB)})`} | ${left >= 0 ? '+' : ''}${left.toFixed(0)} MiB (${percent(row.afterBurstMiB, row.beforeBurstMiB)}) |`,
      )
    }
    out.push('')
  }
  const failures = results.flatMap((r) =>
    KEYS.flatMap((k) => [
      ...r.failures[k].map((m) => `- ${r.scenario.name}, ${k}: run failed: ${m}`),
      ...(r.counted[k]
        ? [
            `- ${r.scenario.name}, ${k}: ${r.counted[k]} error(s), e.g. ${r.countedSamples[k].join('; ')}`,
          ]
        : []),
    ]),
  )
  if (failures.length || problems.count) {
    out.push('Errors:')
    out.push('')
    out.push(...failures.map((line) => line.replaceAll('\n', ' ').slice(0, 600)))
    if (problems.count) {
      out.push(`- ATCR logged ${problems.count} warning/error line(s); distinct ones:`)
      for (const sample of problems.samples) out.push(`  - ${sample}`)
    }
    out.push('')
  }
  return out.join('\n')
}
