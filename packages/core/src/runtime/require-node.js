// The first thing every ATCR executable runs, in plain JavaScript so that any Node can
// load it: on a Node without TypeScript type stripping (older than 22.18) it says so in
// one line, instead of an ERR_UNKNOWN_FILE_EXTENSION stack trace.

export const MINIMUM_NODE = '22.18'

/** Exits with status 1 and a one-line hint unless this Node is new enough. */
export function requireNode(program) {
  const [major, minor] = process.versions.node.split('.').map(Number)
  const [needMajor, needMinor] = MINIMUM_NODE.split('.').map(Number)
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return
  process.stderr.write(
    `${program}: needs Node.js ${MINIMUM_NODE} or newer, this is ${process.versions.node}; ` +
      'in the ATCR checkout run `source scripts/env.sh` (it provides Node 24), or install Node 24 LTS\n',
  )
  process.exit(1)
}
