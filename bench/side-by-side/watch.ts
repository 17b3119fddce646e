// What the servers spend while a scenario's timed part runs: CPU time (utime + stime, and
// stime apart) and
// peak RSS of each process, the kernel's VmHWM (reset at the start where /proc allows it)
// and VmRSS sampled every 50 ms. Also keeps each process's peak over the whole pass.
import { cpuSeconds, resetPeak, statusKiB } from '../lib/processes.ts'
import type { WatchedProcess } from './targets.ts'

const SAMPLE_MS = 50

export interface Usage {
  /** CPU seconds (user + kernel) per process name. */
  cpu: Record<string, number>
  /** Of those, the seconds spent in the kernel. */
  kernel: Record<string, number>
  /** Peak RSS in MiB per process name. */
  peakMiB: Record<string, number>
}

const passPeakKiB = new Map<number, number>()

function notePeak(pid: number, kib: number) {
  if (kib > (passPeakKiB.get(pid) ?? 0)) passPeakKiB.set(pid, kib)
}

/** The highest RSS seen for a process since the pass began (sampled or VmHWM), MiB. */
export function passPeakMiB(pid: number): number {
  notePeak(pid, statusKiB(pid, 'VmHWM'))
  return (passPeakKiB.get(pid) ?? 0) / 1024
}

export function rssMiB(pid: number): number {
  return statusKiB(pid, 'VmRSS') / 1024
}

/** Starts watching; stop() returns what each process used meanwhile. */
export function watch(processes: WatchedProcess[]): { stop(): Usage } {
  const startCpu = new Map<number, { user: number; kernel: number }>()
  const peak = new Map<number, number>()
  const resets = new Map<number, boolean>()
  for (const { pid } of processes) {
    // The peak so far belongs to the pass before the kernel's counter is reset.
    notePeak(pid, statusKiB(pid, 'VmHWM'))
    resets.set(pid, resetPeak(pid))
    startCpu.set(pid, cpuSeconds(pid))
    peak.set(pid, statusKiB(pid, 'VmRSS'))
  }
  const sample = () => {
    for (const { pid } of processes) {
      const rss = statusKiB(pid, 'VmRSS')
      if (rss > (peak.get(pid) ?? 0)) peak.set(pid, rss)
    }
  }
  const timer = setInterval(sample, SAMPLE_MS)
  return {
    stop() {
      clearInterval(timer)
      sample()
      const usage: Usage = { cpu: {}, kernel: {}, peakMiB: {} }
      for (const { name, pid } of processes) {
        const hwm = resets.get(pid) ? statusKiB(pid, 'VmHWM') : 0
        const kib = Math.max(peak.get(pid) ?? 0, hwm)
        notePeak(pid, kib)
        const [now, start] = [cpuSeconds(pid), startCpu.get(pid)]
        usage.kernel[name] = now.kernel - (start?.kernel ?? 0)
        usage.cpu[name] = now.user - (start?.user ?? 0) + usage.kernel[name]
        usage.peakMiB[name] = kib / 1024
      }
      return usage
    },
  }
}

/** Adds b into a: CPU summed, peaks maxed. */
export function mergeUsage(a: Usage, b: Usage): Usage {
  const out: Usage = { cpu: { ...a.cpu }, kernel: { ...a.kernel }, peakMiB: { ...a.peakMiB } }
  for (const [name, cpu] of Object.entries(b.cpu)) out.cpu[name] = (out.cpu[name] ?? 0) + cpu
  for (const [name, cpu] of Object.entries(b.kernel)) {
    out.kernel[name] = (out.kernel[name] ?? 0) + cpu
  }
  for (const [name, mib] of Object.entries(b.peakMiB)) {
    out.peakMiB[name] = Math.max(out.peakMiB[name] ?? 0, mib)
  }
  return out
}
