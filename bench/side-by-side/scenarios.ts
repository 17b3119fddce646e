// The scenarios of issue 15. Each measures one target in one run and times only its core
// (through `time`, which also records the servers' CPU time and peak RSS meanwhile);
// preparation (fresh blobs and layouts, tokens, images to pull) stays outside the timing.
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createLayout,
  createStampedBlob,
  type Layout,
  MiB,
  type StampedBlob,
  skopeoPull,
  skopeoPush,
} from './images.ts'
import type { Options, ScenarioName } from './options.ts'
import {
  curlGet,
  getManifest,
  listTags,
  pushTinyImage,
  putBlobFile,
  putManifest,
  type TinyImage,
} from './registry-client.ts'
import type { Target } from './targets.ts'

export interface Metric {
  name: string
  unit: 's' | 'ms'
  /** Bytes moved per measurement (for a MiB/s column). */
  bytes?: number
  /** What is measured, for the report. */
  what: string
}

export type Time = <T>(action: () => Promise<T>) => Promise<{ seconds: number; value: T }>

export interface Measured {
  values: Record<string, number>
  /** Failures counted without failing the run (e.g. pulls refused under load). */
  errors?: number
  errorSamples?: string[]
}

export interface Scenario {
  name: ScenarioName
  metrics: Metric[]
  /** Once per target and pass, before its first run (untimed). */
  setup?(target: Target): Promise<void>
  /** Once per run, before the targets take their turn (untimed, shared by both). */
  beforeRun?(run: number): Promise<void>
  afterRun?(run: number): Promise<void>
  measure(target: Target, run: number, time: Time): Promise<Measured>
}

export interface Context {
  options: Options
  work: string
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

/** Runs `count` tasks with at most `limit` at a time. */
async function pool(count: number, limit: number, task: (i: number) => Promise<void>) {
  let next = 0
  const worker = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker))
}

export interface Built {
  scenarios: Scenario[]
  /** The image concurrent-pull pulls (pushed on first use): the memory burst pulls it too. */
  burstRepo(target: Target): Promise<string>
}

/**
 * The selected scenarios. A scenario's only metric, when `measure` leaves it out, is the
 * time its `time` calls took.
 */
export function buildScenarios(ctx: Context): Built {
  const { options, work } = ctx
  const blobs = new Map<number, Promise<StampedBlob>>()
  /** A random file of `mib` MiB, created once per pass. */
  const blobFile = (mib: number) => {
    let blob = blobs.get(mib)
    if (!blob) {
      blob = createStampedBlob(join(work, `blob-${mib}.bin`), mib * MiB)
      blobs.set(mib, blob)
    }
    return blob
  }
  const layouts = new Map<string, Promise<Layout>>()
  const layout = (key: string, layers: number, bytes: number) => {
    let made = layouts.get(key)
    if (!made) {
      made = createLayout(join(work, `layout-${key}`), layers, bytes)
      layouts.set(key, made)
    }
    return made
  }
  const dropLayout = async (key: string) => {
    layouts.delete(key)
    await rm(join(work, `layout-${key}`), { recursive: true, force: true })
  }
  // Where each target's pushes of a run went, for the pulls that follow them.
  const rawPut = new Map<string, { repo: string; digest: string; size: number }>()
  const pushed = new Map<string, string>()
  const bigBytes = options.bigMib * MiB
  const pulled = (name: string) => join(work, `pulled-${name}`)

  const rawPutOnce = async (target: Target, run: number, repo: string, time?: Time) => {
    const blob = await blobFile(options.bigMib)
    const digest = await blob.stamp(`${target.key}-${run}`)
    const auth = await target.authorization(repo, 'push')
    const put = () => putBlobFile(target, repo, blob.path, digest, auth)
    if (time) await time(put)
    else await put()
    rawPut.set(`${target.key}-${run}`, { repo, digest, size: blob.size })
  }

  /** skopeo push / pull of one layout per run, shared by the two scenarios of a kind. */
  const skopeoPair = (
    kind: 'big' | 'small',
    layers: number,
    layerBytes: number,
    bytes: number,
  ): Scenario[] => {
    const pushName = `skopeo-push-${kind}` as ScenarioName
    const pullName = `skopeo-pull-${kind}` as ScenarioName
    const key = (run: number) => `${kind}-${run}`
    const push = async (target: Target, run: number, time?: Time) => {
      const image = await layout(key(run), layers, layerBytes)
      const repo = target.repo(`${kind}-${run}`)
      if (time) await time(() => skopeoPush(target, image, repo))
      else await skopeoPush(target, image, repo)
      pushed.set(`${target.key}-${key(run)}`, repo)
    }
    return [
      {
        name: pushName,
        metrics: [
          {
            name: 'push',
            unit: 's',
            bytes,
            what: `skopeo copy oci: → docker://, ${layers} layer(s) of ${layerBytes >= MiB ? `${layerBytes / MiB} MiB` : `${layerBytes / 1024} KiB`} (random, gzip media type)`,
          },
        ],
        beforeRun: async (run) => {
          await layout(key(run), layers, layerBytes)
        },
        afterRun: async (run) => {
          if (!options.only.has(pullName)) await dropLayout(key(run))
        },
        measure: async (target, run, time) => {
          await push(target, run, time)
          return { values: {} }
        },
      },
      {
        name: pullName,
        metrics: [
          {
            name: 'pull',
            unit: 's',
            bytes,
            what: `skopeo copy docker:// → a fresh oci: dir (signed in), blobs checked`,
          },
        ],
        afterRun: (run) => dropLayout(key(run)),
        measure: async (target, run, time) => {
          if (!pushed.has(`${target.key}-${key(run)}`)) await push(target, run)
          const repo = pushed.get(`${target.key}-${key(run)}`)!
          const image = await layout(key(run), layers, layerBytes)
          const into = pulled(`${target.key}-${key(run)}`)
          await time(() => skopeoPull(target, repo, into, image))
          return { values: {} }
        },
      },
    ]
  }

  // concurrent-pull and the memory burst: one image per target, pulled by many at once.
  const concurrentImages = new Map<string, { repo: string; image: Layout }>()
  const concurrentSetup = async (target: Target) => {
    if (concurrentImages.has(target.key)) return
    const image = await layout('concurrent', 1, options.concurrentMib * MiB)
    const repo = target.repo('concurrent')
    await skopeoPush(target, image, repo)
    concurrentImages.set(target.key, { repo, image })
  }

  const tiny = new Map<string, { repo: string; image: TinyImage }>()
  const tagsRepo = new Map<string, string>()

  const all: Scenario[] = [
    {
      name: 'raw-put',
      metrics: [
        {
          name: 'put',
          unit: 's',
          bytes: bigBytes,
          what: `POST /blobs/uploads/ + PUT ?digest= of ${options.bigMib} MiB (curl -T, streamed from a file)`,
        },
      ],
      measure: async (target, run, time) => {
        await rawPutOnce(target, run, target.repo(`raw-${run}`), time)
        return { values: {} }
      },
    },
    {
      name: 'raw-get',
      metrics: [
        {
          name: 'get',
          unit: 's',
          bytes: bigBytes,
          what: `GET of that blob, following redirects, to /dev/null (curl -L)`,
        },
      ],
      measure: async (target, run, time) => {
        if (!rawPut.has(`${target.key}-${run}`)) {
          await rawPutOnce(target, run, target.repo(`raw-${run}`))
        }
        const { repo, digest, size } = rawPut.get(`${target.key}-${run}`)!
        const auth = await target.authorization(repo, 'pull')
        await time(() => curlGet(`${target.url}/v2/${repo}/blobs/${digest}`, auth, size))
        return { values: {} }
      },
    },
    ...skopeoPair('big', 1, bigBytes, bigBytes),
    ...skopeoPair(
      'small',
      options.smallLayers,
      options.smallLayerKib * 1024,
      options.smallLayers * options.smallLayerKib * 1024,
    ),
    {
      name: 'concurrent-pull',
      metrics: [
        {
          name: 'wall',
          unit: 's',
          bytes: options.concurrentPulls * options.concurrentMib * MiB,
          what: `${options.concurrentPulls} pulls at once of a ${options.concurrentMib} MiB image: each a token (signed in), the manifest (fetch), config and layer (curl -L); wall time of all`,
        },
      ],
      setup: concurrentSetup,
      measure: async (target, _run, time) => {
        const { repo } = concurrentImages.get(target.key)!
        const { value } = await time(() => pullBurst(target, repo, options.concurrentPulls))
        return { values: {}, errors: value.length, errorSamples: value.slice(0, 3) }
      },
    },
    {
      name: 'skopeo-push-huge',
      metrics: [
        {
          name: 'push',
          unit: 's',
          bytes: options.hugeMib * MiB,
          what: `skopeo copy of one ${options.hugeMib} MiB layer`,
        },
      ],
      beforeRun: async (run) => {
        await layout(`huge-${run}`, 1, options.hugeMib * MiB)
      },
      afterRun: (run) => dropLayout(`huge-${run}`),
      measure: async (target, run, time) => {
        const image = await layout(`huge-${run}`, 1, options.hugeMib * MiB)
        await time(() => skopeoPush(target, image, target.repo(`huge-${run}`)))
        return { values: {} }
      },
    },
    {
      name: 'raw-put-growth',
      metrics: options.growthMib.map((mib) => ({
        name: `${mib} MiB`,
        unit: 's' as const,
        bytes: mib * MiB,
        what: `raw PUT of ${mib} MiB (linear: MiB/s stays flat across sizes)`,
      })),
      measure: async (target, run, time) => {
        const values: Record<string, number> = {}
        for (const mib of options.growthMib) {
          const blob = await blobFile(mib)
          const repo = target.repo(`growth-${mib}-${run}`)
          const digest = await blob.stamp(`${target.key}-${run}`)
          const auth = await target.authorization(repo, 'push')
          const { seconds } = await time(() => putBlobFile(target, repo, blob.path, digest, auth))
          values[`${mib} MiB`] = seconds
        }
        return { values }
      },
    },
    {
      name: 'tag-put',
      metrics: [
        {
          name: 'per tag',
          unit: 'ms',
          what: `PUT of an existing manifest by ${options.tagPuts} new tags, one after another (ms per tag)`,
        },
      ],
      measure: async (target, run, time) => {
        const repo = target.repo(`tagput-${run}`)
        const auth = await target.authorization(repo, 'push')
        const image = await pushTinyImage(target, repo, 'first', auth)
        const { seconds } = await time(async () => {
          for (let i = 0; i < options.tagPuts; i++) {
            await putManifest(target, repo, `t-${i}`, image.manifest, auth)
          }
        })
        return { values: { 'per tag': (seconds * 1000) / options.tagPuts } }
      },
    },
    {
      name: 'tags-list',
      metrics: [
        {
          name: 'full',
          unit: 'ms',
          what: `GET tags/list of ${options.tags} tags, every page (mean of 10)`,
        },
        {
          name: 'n=100',
          unit: 'ms',
          what: 'GET tags/list?n=100, first page (mean of 10; Distribution 2.8 ignores n on tags/list and answers every tag)',
        },
        {
          name: 'manifest p50',
          unit: 'ms',
          what: `GET manifest by tag in this repository of ${options.tags} tags, 100 one after another: median (compare manifest-get, one tag)`,
        },
      ],
      setup: async (target) => {
        const repo = target.repo('tags')
        const auth = await target.authorization(repo, 'push')
        const started = performance.now()
        const image = await pushTinyImage(target, repo, 'tag-0000', auth)
        await pool(options.tags - 1, 4, (i) =>
          putManifest(target, repo, `tag-${String(i + 1).padStart(4, '0')}`, image.manifest, auth),
        )
        const seconds = (performance.now() - started) / 1000
        console.log(`  ${target.label}: ${options.tags} tags created in ${seconds.toFixed(1)} s`)
        tagsRepo.set(target.key, repo)
      },
      measure: async (target, _run, time) => {
        const repo = tagsRepo.get(target.key)!
        const auth = await target.authorization(repo, 'pull')
        const full = await time(async () => {
          for (let i = 0; i < 10; i++) {
            const count = await listTags(target, repo, auth)
            if (count !== options.tags) throw new Error(`listed ${count} of ${options.tags} tags`)
          }
        })
        const page = await time(async () => {
          for (let i = 0; i < 10; i++) {
            // Distribution 2.8 ignores n on tags/list and answers every tag.
            const count = await listTags(target, repo, auth, 100)
            if (count !== Math.min(100, options.tags) && count !== options.tags) {
              throw new Error(`?n=100 listed ${count} tags`)
            }
          }
        })
        const manifests: number[] = []
        for (let i = 0; i < 100; i++) {
          const tag = `tag-${String((i * 37) % options.tags).padStart(4, '0')}`
          const start = performance.now()
          await getManifest(target, repo, tag, auth)
          manifests.push(performance.now() - start)
        }
        manifests.sort((a, b) => a - b)
        return {
          values: {
            full: full.seconds * 100,
            'n=100': page.seconds * 100,
            'manifest p50': percentile(manifests, 50),
          },
        }
      },
    },
    {
      name: 'manifest-get',
      metrics: [
        {
          name: 'p50',
          unit: 'ms',
          what: `GET manifest by tag, signed in (token once), ${options.manifestGets} one after another: median`,
        },
        { name: 'p99', unit: 'ms', what: '… 99th percentile' },
        {
          name: 'anonymous p50',
          unit: 'ms',
          what: `the same with an anonymous token (ATCR) / no auth (Distribution), ${Math.ceil(options.manifestGets / 4)} GETs: median`,
        },
      ],
      setup: async (target) => {
        const repo = target.repo('manifest')
        const auth = await target.authorization(repo, 'push')
        tiny.set(target.key, { repo, image: await pushTinyImage(target, repo, 'latest', auth) })
      },
      measure: async (target, _run, time) => {
        const { repo } = tiny.get(target.key)!
        const latencies = async (auth: string | null, count: number) => {
          for (let i = 0; i < 10; i++) await getManifest(target, repo, 'latest', auth)
          const ms: number[] = []
          for (let i = 0; i < count; i++) {
            const start = performance.now()
            await getManifest(target, repo, 'latest', auth)
            ms.push(performance.now() - start)
          }
          return ms.sort((a, b) => a - b)
        }
        const signedIn = await target.authorization(repo, 'pull')
        const anonymous = await target.authorization(repo, 'anonymous')
        const { value: signed } = await time(() => latencies(signedIn, options.manifestGets))
        const { value: anon } = await time(() =>
          latencies(anonymous, Math.ceil(options.manifestGets / 4)),
        )
        return {
          values: {
            p50: percentile(signed, 50),
            p99: percentile(signed, 99),
            'anonymous p50': percentile(anon, 50),
          },
        }
      },
    },
  ]
  return {
    scenarios: all.filter((scenario) => options.only.has(scenario.name)),
    burstRepo: async (target) => {
      await concurrentSetup(target)
      return concurrentImages.get(target.key)!.repo
    },
  }
}

/**
 * `count` pulls at once, each as a client does it: a token, the manifest, then its config
 * and layers. Returns the failures (one message each); never throws.
 */
export async function pullBurst(target: Target, repo: string, count: number): Promise<string[]> {
  const failures: string[] = []
  await Promise.all(
    Array.from({ length: count }, async () => {
      try {
        const auth = await target.authorization(repo, 'pull')
        const manifest = await getManifest(target, repo, 'bench', auth)
        for (const blob of [manifest.config!, ...(manifest.layers ?? [])]) {
          await curlGet(`${target.url}/v2/${repo}/blobs/${blob.digest}`, auth, blob.size)
        }
      } catch (error) {
        failures.push((error as Error).message.split('\n')[0]!.slice(0, 300))
      }
    }),
  )
  return failures
}
