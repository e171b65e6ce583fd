# Shared by release/build.sh and release/test-arm64.sh.
REL_CACHE=${PGR_RELEASE_CACHE:-/var/cache/pgreplica-release}
DIST=${DIST:-$REPO/dist}
LOGS=$REL_CACHE/logs
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/operator/Cargo.toml" | head -1)
T0=$(date +%s)
say() { printf '[%s %4ss] %s\n' "${SAY_AS:-release}" "$(( $(date +%s) - T0 ))" "$*"; }
fail() { say "FAIL: $1"; shift; [ $# -gt 0 ] && printf '%s\n' "$@"; exit 1; }
apt_host() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
[ "$(id -u)" = 0 ] || fail "$(basename "$0") needs root (the toolchain is a chroot): run it with sudo"
mkdir -p "$LOGS"
for f in toolchain binaries arm64root oci image; do source "$REPO/release/lib/$f.sh"; done
