// Child processes for the benches: spawn with bounded output, wait until an URL answers,
// stop, and read what /proc says about a process (RSS, peak RSS, CPU time).
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'

const OUTPUT_LIMIT = 32 * 1024

export interface Spawned {
  child: ChildProcess
  /** The last 32 KiB the process printed (stdout and stderr). */
  output(): string
}

/**
 * Spawns `command` with stdout and stderr piped; keeps the tail of its output, and hands
 * complete stdout lines to `onLine` (when given).
 */
export function spawnLogged(
  command: string,
  argv: string[],
  onLine?: (line: string) => void,
): Spawned {
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  let partial = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-OUTPUT_LIMIT)
  }
  child.stdout?.on('data', (chunk: Buffer) => {
    keep(chunk)
    if (!onLine) return
    const split = (partial + chunk.toString()).split('\n')
    partial = split.pop() ?? ''
    for (const line of split) onLine(line)
  })
  child.stderr?.on('data', keep)
  return { child, output: () => output }
}

/** Waits (at most `timeoutMs`) until `url` answers anything at all. */
export async function waitForUrl(
  url: string,
  child: ChildProcess,
  output: () => string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited early (${child.exitCode ?? child.signalCode}):\n${output()}`)
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) })
      await response.body?.cancel()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  throw new Error(`${url} never answered in ${timeoutMs} ms:\n${output()}`)
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/** A field of /proc/<pid>/status in KiB (VmRSS: resident now, VmHWM: peak resident), 0 if gone. */
export function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)
    return match ? Number(match[1]) : 0
  } catch {
    return 0
  }
}

const CLOCK_TICKS = 100

/** A process's CPU time so far, in user space and in the kernel, seconds (/proc/<pid>/stat). */
export function cpuSeconds(pid: number): { user: number; kernel: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { user: Number(fields[11]) / CLOCK_TICKS, kernel: Number(fields[12]) / CLOCK_TICKS }
  } catch {
    return { user: 0, kernel: 0 }
  }
}

/** Resets the kernel's peak RSS (VmHWM) of a process to its current RSS; false if refused. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}
