# Shared by release/build.sh and release/test-arm64.sh.
shopt -s inherit_errexit   # a failure inside $(...) fails the script too
umask 022                  # file modes in the image do not depend on the caller's umask
REL_CACHE=${PGR_RELEASE_CACHE:-/var/cache/pgreplica-release}
DIST=${DIST:-$REPO/dist}
LOGS=$REL_CACHE/logs
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/operator/Cargo.toml" | head -1)
T0=$(date +%s)
say() { printf '[%s %4ss] %s\n' "${SAY_AS:-release}" "$(( $(date +%s) - T0 ))" "$*"; }
# to stderr: a failure inside $(...) must reach the terminal, not the variable
fail() { { say "FAIL: $1"; shift; [ $# -gt 0 ] && printf '%s\n' "$@"; } >&2; exit 1; }
apt_host() { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
[ "$(id -u)" = 0 ] || fail "$(basename "$0") needs root (the toolchain is a chroot): run it with sudo"
mkdir -p "$LOGS"
# one release build or arm64 test at a time: they share the toolchain, target dir and roots
exec 9>"$REL_CACHE/.lock"
flock -n 9 || { say "waiting for another release/build.sh or test-arm64.sh (lock $REL_CACHE/.lock)"; flock 9; }
for f in toolchain binaries arm64root oci image; do source "$REPO/release/lib/$f.sh"; done
