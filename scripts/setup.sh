# Sourced by scripts/test and scripts/dev: toolchain, then the workspace's npm packages.
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$project_root"
install_stamp=node_modules/.atcr-installed
if [ ! -f "$install_stamp" ] || [ pnpm-lock.yaml -nt "$install_stamp" ]; then
  echo "setup: installing the workspace's npm packages" >&2
  pnpm install --frozen-lockfile --reporter=append-only >&2
  touch "$install_stamp"
fi
