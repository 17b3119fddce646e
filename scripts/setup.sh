# Sourced by scripts/test and scripts/dev: toolchain, then the workspace's npm packages.
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$project_root"
if [ ! -f node_modules/.modules.yaml ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  echo "setup: installing the workspace's npm packages" >&2
  pnpm install --frozen-lockfile --reporter=append-only >&2
fi
