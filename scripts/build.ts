// Builds an installable npm package per app under build/: the TypeScript compiled to
// JavaScript (tsconfig.build.json), laid out as in the checkout (src/, bin/, views/,
// static/) with @atcr/core compiled and bundled in its node_modules, every other
// dependency left to npm. Node strips types only outside node_modules, so an installed
// package must carry JavaScript. Run through scripts/build (docs/operations.md).
import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const buildDir = join(root, 'build')
const compiled = join(buildDir, 'js')

interface PackageJson {
  name: string
  version?: string
  description?: string
  bin?: Record<string, string>
  exports?: Record<string, string>
  dependencies?: Record<string, string>
}

const APPS = ['hold', 'appview', 'credential-helper']

function readJson(path: string): PackageJson {
  return JSON.parse(readFileSync(path, 'utf8')) as PackageJson
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`)
}

/** Registry dependencies only: the workspace's own packages are bundled instead. */
function registryDependencies(pkg: PackageJson): Record<string, string> {
  return Object.fromEntries(
    Object.entries(pkg.dependencies ?? {}).filter(([, range]) => !range.startsWith('workspace:')),
  )
}

/** The compiled files of a package's src/, and every file there that is not TypeScript. */
function copySources(packageDir: string, into: string): void {
  cpSync(join(compiled, relative(root, packageDir), 'src'), join(into, 'src'), { recursive: true })
  cpSync(join(packageDir, 'src'), join(into, 'src'), {
    recursive: true,
    filter: (source) => !source.endsWith('.ts'),
  })
}

/** A bin of the checkout, importing the compiled modules. */
function copyBin(from: string, to: string): void {
  const text = readFileSync(from, 'utf8').replace(/(import\('\.\.\/src\/[^']+)\.ts'\)/g, "$1.js')")
  writeFileSync(to, text, { mode: 0o755 })
}

rmSync(buildDir, { recursive: true, force: true })
execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
})

const rootPkg = readJson(join(root, 'package.json')) as PackageJson & {
  engines: Record<string, string>
  license: string
}
// The workspace's overrides (pnpm-workspace.yaml) hold for npm too: the versions they pin
// are the ones that install and run here. yaml comes from @atcr/core's dependencies.
const { parse } = createRequire(join(root, 'packages/core/package.json'))('yaml') as {
  parse: (text: string) => { overrides?: Record<string, string> }
}
const overrides = parse(readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8')).overrides ?? {}

const corePkg = readJson(join(root, 'packages/core/package.json'))
for (const app of APPS) {
  const appDir = join(root, 'apps', app)
  const appPkg = readJson(join(appDir, 'package.json'))
  const out = join(buildDir, app)
  copySources(appDir, out)
  for (const asset of ['views', 'static']) {
    try {
      cpSync(join(appDir, asset), join(out, asset), { recursive: true })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }
  mkdirSync(join(out, 'bin'))
  for (const bin of Object.values(appPkg.bin ?? {})) copyBin(join(appDir, bin), join(out, bin))

  const core = join(out, 'node_modules/@atcr/core')
  copySources(join(root, 'packages/core'), core)
  writeJson(join(core, 'package.json'), {
    name: corePkg.name,
    version: corePkg.version,
    type: 'module',
    exports: Object.fromEntries(
      Object.entries(corePkg.exports ?? {}).map(([key, path]) => [
        key,
        path.replace(/\.ts$/, '.js'),
      ]),
    ),
  })

  writeJson(join(out, 'package.json'), {
    name: appPkg.name,
    version: appPkg.version ?? rootPkg.version ?? corePkg.version,
    description: appPkg.description,
    license: rootPkg.license,
    type: 'module',
    engines: rootPkg.engines,
    bin: appPkg.bin,
    // @atcr/core's own dependencies sit at the top, where its bundled copy finds them.
    dependencies: {
      ...registryDependencies(corePkg),
      ...registryDependencies(appPkg),
      [corePkg.name]: corePkg.version,
    },
    bundleDependencies: ['@atcr/core'],
    overrides,
  })
  execFileSync('npm', ['pack', '--silent', '--pack-destination', buildDir], {
    cwd: out,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}
rmSync(compiled, { recursive: true, force: true })
console.log(
  `built ${APPS.map((app) => join('build', app)).join(', ')} and their npm packages (build/*.tgz)`,
)
