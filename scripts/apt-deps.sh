# Sourced by scripts/test: the Debian packages the end-to-end tests drive (real OCI clients,
# chromium for the browser tests, PostgreSQL for the AppView database tests and HAProxy for
# several AppViews behind a load balancer; mmdebstrap and podman-compose for the deploy test;
# caddy for the compose topology test).
# Installed on first run when missing, as root.
apt_packages=(skopeo podman buildah chromium postgresql haproxy mmdebstrap podman-compose caddy)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
# The docker CLI client (this kind of machine ships one in /usr/local/bin; Debian's
# docker.io brings it where it is missing).
command -v docker >/dev/null || missing+=(docker.io)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
    exit 2
  fi
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
