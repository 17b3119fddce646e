// bench/run's Node side: for each storage pass, starts CNCF Distribution and the ATCR stack,
// runs the selected scenarios on both, which goes first alternating run by run, then writes
// and prints the report. Every child process is stopped and the temporary folder removed
// at the end, on errors and on Ctrl-C; exits 1 if a run failed or counted errors.
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hasCommand } from '@atcr/testkit'
import { type InstalledBins, installApps } from '../lib/installed.ts'
import { type Limits, measureLimits } from './limits.ts'
import { type Options, parseOptions, USAGE } from './options.ts'
import {
  describeMachine,
  type Machine,
  type MemoryResult,
  renderReport,
  type ScenarioResult,
  type TargetKey,
} from './report.ts'
import { buildScenarios, pullBurst, type Scenario, type Time } from './scenarios.ts'
import { atcrTarget, distributionTarget, type Target } from './targets.ts'
import { mergeUsage, passPeakMiB, rssMiB, type Usage, watch } from './watch.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// Cleanups of whatever is running, newest first: on normal exit, errors and signals.
const cleanups: (() => Promise<void>)[] = []
async function cleanUp(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => {})
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the servers`)
    const timer = setTimeout(() => process.exit(130), 30_000)
    void cleanUp().finally(() => {
      clearTimeout(timer)
      process.exit(130)
    })
  })
}

function emptyResult(scenario: Scenario): ScenarioResult {
  const both = <T>(make: () => T) => ({ atcr: make(), distribution: make() })
  return {
    scenario,
    values: Object.fromEntries(scenario.metrics.map((m) => [m.name, both<number[]>(() => [])])),
    usage: both<Usage[]>(() => []),
    failures: both<string[]>(() => []),
    counted: both(() => 0),
    countedSamples: both<string[]>(() => []),
  }
}

const firstLine = (error: unknown) =>
  (error instanceof Error ? error.message : String(error)).split('\n').slice(0, 3).join(' ')

async function runScenario(
  scenario: Scenario,
  targets: Target[],
  options: Options,
): Promise<ScenarioResult> {
  const result = emptyResult(scenario)
  const ready = new Set<TargetKey>()
  for (const target of targets) {
    try {
      await scenario.setup?.(target)
      ready.add(target.key)
    } catch (error) {
      result.failures[target.key].push(`setup: ${firstLine(error)}`)
    }
  }
  for (let run = 1; run <= options.runs; run++) {
    try {
      await scenario.beforeRun?.(run)
    } catch (error) {
      for (const target of targets)
        result.failures[target.key].push(`prepare run ${run}: ${firstLine(error)}`)
      continue
    }
    // Which target goes first alternates run by run, and every timed action starts with no
    // dirty pages left to write back: neither pays for the other's writes.
    const order = run % 2 === 1 ? targets : [...targets].reverse()
    for (const target of order) {
      if (!ready.has(target.key)) continue
      let usage: Usage = { cpu: {}, kernel: {}, peakMiB: {} }
      let timed = 0
      const time: Time = async (action) => {
        execFileSync('sync')
        const watcher = watch(target.processes)
        const start = performance.now()
        try {
          const value = await action()
          const seconds = (performance.now() - start) / 1000
          timed += seconds
          return { seconds, value }
        } finally {
          usage = mergeUsage(usage, watcher.stop())
        }
      }
      try {
        const measured = await scenario.measure(target, run, time)
        const values = { ...measured.values }
        const only = scenario.metrics.length === 1 ? scenario.metrics[0]! : null
        if (only && values[only.name] === undefined) {
          values[only.name] = only.unit === 'ms' ? timed * 1000 : timed
        }
        for (const metric of scenario.metrics) {
          const value = values[metric.name]
          if (value !== undefined) result.values[metric.name]![target.key].push(value)
        }
        result.usage[target.key].push(usage)
        result.counted[target.key] += measured.errors ?? 0
        result.countedSamples[target.key].push(...(measured.errorSamples ?? []).slice(0, 3))
        const shown = scenario.metrics
          .map((m) => `${m.name} ${values[m.name]?.toFixed(m.unit === 'ms' ? 2 : 3)} ${m.unit}`)
          .join(', ')
        const errors = measured.errors ? `, ${measured.errors} errors` : ''
        const cpu = Object.entries(usage.cpu)
          .map(([name, s]) => `${name} ${s.toFixed(2)} (${(usage.kernel[name] ?? 0).toFixed(2)})`)
          .join(', ')
        console.log(
          `  run ${run} ${target.label.padEnd(12)} ${shown}${errors}; CPU s (kernel) ${cpu}`,
        )
      } catch (error) {
        result.failures[target.key].push(`run ${run}: ${firstLine(error)}`)
        console.log(`  run ${run} ${target.label.padEnd(12)} FAILED: ${firstLine(error)}`)
      }
    }
    try {
      await scenario.afterRun?.(run)
    } catch (error) {
      console.log(`  after run ${run}: ${firstLine(error)}`)
    }
  }
  return result
}

async function pass(
  options: Options,
  bins: InstalledBins | null,
  storage: 'filesystem' | 's3',
  machine: Machine,
  limits: Limits | null,
  command: string,
): Promise<boolean> {
  const started = performance.now()
  const work = await mkdtemp(join(tmpdir(), 'atcr-bench-run-'))
  cleanups.push(async () => {
    if (options.keep) console.log(`kept ${work}`)
    else await rm(work, { recursive: true, force: true })
  })
  console.log(`\n# ${storage} pass (work dir ${work})`)
  const atcr = await atcrTarget(work, storage, { index: options.index, bins })
  cleanups.push(atcr.close)
  const distribution = await distributionTarget(work)
  cleanups.push(distribution.close)
  const targets = [atcr, distribution]
  for (const target of targets) {
    console.log(
      `${target.label} at ${target.url}: ${target.processes.map((p) => `${p.name} ${p.pid}`).join(', ')}`,
    )
  }
  const built = buildScenarios({ options, work })

  let memory: MemoryResult | null = null
  const idle = new Map<number, number>()
  if (options.only.has('memory')) {
    console.log('== memory: idle, then a burst of pulls')
    await sleep(3_000)
    for (const target of targets) for (const p of target.processes) idle.set(p.pid, rssMiB(p.pid))
    memory = {
      settleSeconds: options.settleSeconds,
      pulls: options.concurrentPulls,
      burstErrors: { atcr: 0, distribution: 0 },
      rows: [],
    }
    const repos = new Map<string, string>()
    for (const target of targets) repos.set(target.key, await built.burstRepo(target))
    // The push of the image may keep memory of its own: read it apart from the pulls'.
    const beforeBurst = new Map<number, number>()
    for (const target of targets) {
      for (const p of target.processes) beforeBurst.set(p.pid, rssMiB(p.pid))
    }
    for (const target of targets) {
      const repo = repos.get(target.key)!
      const failures = await pullBurst(target, repo, options.concurrentPulls)
      memory.burstErrors[target.key] = failures.length
      if (failures.length)
        console.log(`  ${target.label} burst: ${failures.length} errors, e.g. ${failures[0]}`)
    }
    console.log(`  waiting ${options.settleSeconds} s`)
    await sleep(options.settleSeconds * 1000)
    for (const target of targets) {
      for (const p of target.processes) {
        memory.rows.push({
          target: target.label,
          process: p.name,
          idleMiB: idle.get(p.pid) ?? 0,
          beforeBurstMiB: beforeBurst.get(p.pid) ?? 0,
          afterBurstMiB: rssMiB(p.pid),
          peakMiB: 0,
        })
      }
    }
  }

  const results: ScenarioResult[] = []
  for (const scenario of built.scenarios) {
    console.log(`== ${scenario.name}`)
    results.push(await runScenario(scenario, targets, options))
  }
  if (memory) {
    for (const row of memory.rows) {
      const target = targets.find((t) => t.label === row.target)!
      const pid = target.processes.find((p) => p.name === row.process)!.pid
      row.peakMiB = passPeakMiB(pid)
    }
  }
  const problems = atcr.problems()
  // Stop the servers and remove the work dir now (this pass's cleanups only).
  await cleanUp()

  const report = renderReport({
    options,
    storage,
    machine,
    limits,
    results,
    memory,
    problems,
    seconds: (performance.now() - started) / 1000,
    command,
  })
  await mkdir(options.resultsDir, { recursive: true })
  const file = join(
    options.resultsDir,
    `${machine.date}-${machine.commit}-${storage}${options.quick ? '-quick' : ''}.md`,
  )
  await writeFile(file, `${report}\n`)
  console.log(`\n${report}\nwritten to ${file}`)
  return (
    results.every(
      (r) =>
        r.failures.atcr.length +
          r.failures.distribution.length +
          r.counted.atcr +
          r.counted.distribution ===
        0,
    ) &&
    (memory === null || memory.burstErrors.atcr + memory.burstErrors.distribution === 0)
  )
}

async function main(): Promise<number> {
  let options: Options | null
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (error) {
    console.error(`${firstLine(error)}\n\n${USAGE}`)
    return 2
  }
  if (!options) {
    console.log(USAGE)
    return 0
  }
  for (const command of ['skopeo', 'curl', 'docker-registry']) {
    if (!hasCommand(command)) {
      console.error(`${command} is needed: run bench/run (it installs it), or apt-get install it`)
      return 2
    }
  }
  const command = `bench/run ${process.argv.slice(2).join(' ')}`.trim()
  const machine = describeMachine(ROOT)
  const total = performance.now()
  let ok = true
  const limitsWork = await mkdtemp(join(tmpdir(), 'atcr-bench-limits-'))
  let limits: Limits | null = null
  try {
    console.log(`physical limits (${options.limitsMib} MiB)...`)
    limits = await measureLimits(limitsWork, options.limitsMib)
  } catch (error) {
    console.error(`physical limits failed: ${firstLine(error)}`)
    ok = false
  } finally {
    await rm(limitsWork, { recursive: true, force: true })
  }
  let bins: InstalledBins | null = null
  if (options.installed) {
    const prefix = await mkdtemp(join(tmpdir(), 'atcr-bench-installed-'))
    cleanups.push(() => rm(prefix, { recursive: true, force: true }))
    console.log(`building and installing the apps into ${prefix}...`)
    bins = await installApps(prefix)
  }
  for (const storage of options.storages) {
    try {
      if (!(await pass(options, bins, storage, machine, limits, command))) ok = false
    } catch (error) {
      console.error(`${storage} pass failed: ${error instanceof Error ? error.stack : error}`)
      ok = false
      await cleanUp()
    }
  }
  console.log(
    `\nbench/run took ${((performance.now() - total) / 60_000).toFixed(1)} min${ok ? '' : '; some runs failed (see Errors above)'}`,
  )
  return ok ? 0 : 1
}

process.exitCode = await main()
await cleanUp()
