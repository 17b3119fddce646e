// Command-line options of bench/run, with the sizes of a full run and of --quick.
import { parseArgs } from 'node:util'

export const SCENARIOS = [
  'memory',
  'raw-put',
  'raw-get',
  'skopeo-push-big',
  'skopeo-pull-big',
  'skopeo-push-small',
  'skopeo-pull-small',
  'concurrent-pull',
  'skopeo-push-huge',
  'raw-put-growth',
  'tag-put',
  'tags-list',
  'manifest-get',
] as const
export type ScenarioName = (typeof SCENARIOS)[number]

export interface Options {
  runs: number
  only: Set<ScenarioName>
  storages: ('filesystem' | 's3')[]
  quick: boolean
  huge: boolean
  /** raw-put / raw-get blob and the skopeo-push-big layer, MiB. */
  bigMib: number
  hugeMib: number
  smallLayers: number
  smallLayerKib: number
  concurrentPulls: number
  concurrentMib: number
  growthMib: number[]
  tagPuts: number
  tags: number
  manifestGets: number
  /** Seconds to wait after the burst before reading RSS again (memory). */
  settleSeconds: number
  /** Physical limits: bytes hashed, sent over loopback, written to disk (MiB). */
  limitsMib: number
  resultsDir: string
  keep: boolean
  /** ATCR's AppView indexes its PDS's firehose: listings and lookups come from the index. */
  index: boolean
  /** ATCR from scripts/build's packages installed with npm (as deployed), not the checkout. */
  installed: boolean
}

export const USAGE = `bench/run [options]   ATCR and CNCF Distribution side by side (issue 15)

  --quick                small sizes, 3 runs (a check that everything works)
  --runs N               runs of each scenario on both, which goes first alternating (default 5)
  --only a,b             scenarios: ${SCENARIOS.join(', ')}
  --storage S            filesystem (default), s3 (the hold on s3rver), or both
  --huge                 also skopeo-push-huge (one 2 GiB layer)
  --big-mib N            raw-put / raw-get blob and skopeo-push-big layer (default 512)
  --huge-mib N           skopeo-push-huge layer (default 2048)
  --small-layers N       layers of skopeo-push-small (default 200, of --small-layer-kib 4)
  --concurrent N         concurrent pulls (default 32) of --concurrent-mib (default 64)
  --growth-mib a,b,c     raw-put-growth sizes (default 64,256,1024)
  --tag-puts N           tag-put: tags per run (default 50)
  --tags N               tags-list: tags in the repository (default 1001)
  --no-index             ATCR's AppView without ingest (by default it consumes the PDS's
                         firehose into its index, as a deployed AppView does, so tags/list
                         and manifest lookups are answered from it, not from the PDS)
  --installed            run ATCR's hold and AppView from scripts/build's npm packages,
                         installed into the work dir as a deployment installs them
                         (compiled JavaScript; by default the checkout's TypeScript)
  --manifest-gets N      manifest-get: sequential GETs per run (default 2000)
  --settle-seconds N     memory: wait after the burst (default 60)
  --limits-mib N         physical limits: MiB hashed / sent / written (default 512)
  --results-dir DIR      where the Markdown goes (default bench/results)
  --keep                 keep the temporary folder (its path is printed)
`

export function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    allowNegative: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      quick: { type: 'boolean', default: false },
      huge: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      index: { type: 'boolean', default: true },
      installed: { type: 'boolean', default: false },
      runs: { type: 'string' },
      only: { type: 'string' },
      storage: { type: 'string', default: 'filesystem' },
      'big-mib': { type: 'string' },
      'huge-mib': { type: 'string' },
      'small-layers': { type: 'string' },
      'small-layer-kib': { type: 'string' },
      concurrent: { type: 'string' },
      'concurrent-mib': { type: 'string' },
      'growth-mib': { type: 'string' },
      'tag-puts': { type: 'string' },
      tags: { type: 'string' },
      'manifest-gets': { type: 'string' },
      'settle-seconds': { type: 'string' },
      'limits-mib': { type: 'string' },
      'results-dir': { type: 'string' },
    },
  })
  if (values.help) return null
  const quick = values.quick
  const number = (value: string | undefined, full: number, small: number, min = 1) => {
    const n = value === undefined ? (quick ? small : full) : Number(value)
    if (!Number.isInteger(n) || n < min) throw new Error(`not a whole number >= ${min}: ${value}`)
    return n
  }
  const only = new Set<ScenarioName>()
  for (const name of (values.only ?? SCENARIOS.join(',')).split(',').filter(Boolean)) {
    if (!(SCENARIOS as readonly string[]).includes(name)) {
      throw new Error(`unknown scenario ${name} (known: ${SCENARIOS.join(', ')})`)
    }
    only.add(name as ScenarioName)
  }
  const huge = values.huge
  // The 2 GiB push runs only when asked for, by --huge or by name.
  if (!huge && values.only === undefined) only.delete('skopeo-push-huge')
  const storages =
    values.storage === 'both'
      ? (['filesystem', 's3'] as const)
      : values.storage === 'filesystem' || values.storage === 's3'
        ? ([values.storage] as const)
        : null
  if (!storages) throw new Error(`--storage is filesystem, s3 or both, not ${values.storage}`)
  const growth = (values['growth-mib'] ?? (quick ? '16,32,64' : '64,256,1024'))
    .split(',')
    .map((size) => number(size, 0, 0))
  return {
    runs: number(values.runs, 5, 3),
    only,
    storages: [...storages],
    quick,
    huge,
    bigMib: number(values['big-mib'], 512, 64),
    hugeMib: number(values['huge-mib'], 2048, 256),
    smallLayers: number(values['small-layers'], 200, 200),
    smallLayerKib: number(values['small-layer-kib'], 4, 4),
    concurrentPulls: number(values.concurrent, 32, 32),
    concurrentMib: number(values['concurrent-mib'], 64, 16),
    growthMib: growth,
    tagPuts: number(values['tag-puts'], 50, 20),
    tags: number(values.tags, 1001, 101),
    manifestGets: number(values['manifest-gets'], 2000, 300),
    settleSeconds: number(values['settle-seconds'], 60, 10, 0),
    limitsMib: number(values['limits-mib'], 512, 64),
    resultsDir: values['results-dir'] ?? new URL('../results', import.meta.url).pathname,
    keep: values.keep,
    index: values.index,
    installed: values.installed,
  }
}
