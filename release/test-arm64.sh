#!/usr/bin/env bash
# What CI proves on arm64, under qemu-user on this amd64 machine:
#  1. the library's unit tests, built for aarch64-unknown-linux-gnu (debug: overflow checks and
#     debug assertions on; the release binary is what the smoke runs), run under qemu-aarch64
#     (the few that start PostgreSQL use the toolchain's amd64 PostgreSQL 15);
#  2. a smoke on real arm64 PostgreSQL 15: dist/pgreplica-linux-arm64 runs `local up` of a primary
#     and a synchronous standby in an arm64 Debian bookworm root (initdb, TLS, pg_basebackup,
#     streaming), then `local status` must show both members ready, then `local down`.
# Usage: sudo bash release/test-arm64.sh    (after release/build.sh)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SAY_AS=arm64
source "$REPO/release/lib/common.sh"
BIN=$DIST/pgreplica-linux-arm64
[ -x "$BIN" ] || fail "$BIN is missing: run release/build.sh first"

ensure_toolchain
ensure_arm64_root

t=$(date +%s)
if [ "${SKIP_UNIT:-}" = 1 ]; then say "unit tests: skipped (SKIP_UNIT=1)"; else
say "unit tests: cargo test --lib --target aarch64-unknown-linux-gnu under qemu-aarch64 (log: $LOGS/test-arm64.log)"
in_toolchain nice -n 10 cargo test --locked -p pgreplica --lib --target aarch64-unknown-linux-gnu \
  >"$LOGS/test-arm64.log" 2>&1 || fail "aarch64 unit tests failed:" "$(grep -E '^test .*FAILED|panicked|^error' "$LOGS/test-arm64.log" | head -20)" "$(tail -5 "$LOGS/test-arm64.log")"
say "unit tests: $(grep -E '^test result:' "$LOGS/test-arm64.log" | tail -1) ($(( $(date +%s) - t ))s with the build)"
fi

t=$(date +%s)
smoke=$ARM64_ROOT/var/tmp/pgreplica-smoke
rm -rf "$smoke"; mkdir -p "$smoke"
install -D -m 0755 "$BIN" "$ARM64_ROOT/usr/local/bin/pgreplica"
cp "$REPO/examples/minimal.yaml" "$smoke/minimal.yaml"
file=$(readelf_of "$ARM64_ROOT/usr/lib/postgresql/15/bin/postgres" -h | sed -n 's/ *Machine: *//p')
say "smoke: pgreplica-linux-arm64 with PostgreSQL 15 for $file, emulated (log: $LOGS/smoke-arm64.log)"
cd_smoke='cd /var/tmp/pgreplica-smoke'
if ! in_arm64 /bin/sh -ec "$cd_smoke
  uname -m
  pgreplica --version
  /usr/lib/postgresql/15/bin/postgres --version
  pgreplica local up -f minimal.yaml --dir state --rw-port 25432 --ro-port 25433 --detach --timeout-seconds 600
  pgreplica local status --dir state
  pgreplica local status --dir state -o json > status.json
  pgreplica local down --dir state" >"$LOGS/smoke-arm64.log" 2>&1; then
  tail -30 "$LOGS/smoke-arm64.log"; tail -20 "$smoke"/state/logs/*.log 2>/dev/null || true
  fail "the arm64 smoke failed"
fi
grep -q '^aarch64$' "$LOGS/smoke-arm64.log" || fail "the smoke did not run as aarch64"
verdict=$(python3 - "$smoke/status.json" <<'EOP'
import json, sys
s = json.load(open(sys.argv[1]))
m = {x["name"]: x for x in s["members"]}
ok = (len(m) == 2 and all(x["ready"] for x in m.values())
      and m["one"]["role"] == "primary" and m["two"]["role"] == "standby"
      and m["two"].get("syncState") == "sync")
print("ok" if ok else "not as expected: " + ", ".join(
    f'{x["name"]} {x["role"]} ready={x["ready"]} sync={x.get("syncState")}' for x in m.values()))
EOP
) || verdict="status.json unreadable"
[ "$verdict" = ok ] || fail "the smoke's status: $verdict (in $smoke/status.json)"
say "smoke: both members ready on arm64 PostgreSQL in $(( $(date +%s) - t ))s"
rm -rf "$smoke"

# the arm64 image itself: its layer unpacked, run with only what the image holds (its loader, libc)
archive=$DIST/pgreplica-$VERSION-image.tar
[ -f "$archive" ] || fail "$archive is missing: run release/build.sh first"
img=$REL_CACHE/image-arm64; rm -rf "$img"; mkdir -p "$img/root"
tar -xf "$archive" -C "$img"
layer=$(python3 - "$img" <<'EOP'
import json, sys
d = sys.argv[1]
blob = lambda digest: json.load(open(f"{d}/blobs/sha256/{digest.split(':')[1]}"))
index = blob(json.load(open(f"{d}/index.json"))["manifests"][0]["digest"])
arm = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
print(blob(arm[0]["digest"])["layers"][0]["digest"].split(":")[1])
EOP
) || fail "the image archive has no linux/arm64 manifest"
tar -xzf "$img/blobs/sha256/$layer" -C "$img/root"
out=$(ARM64_CHROOT=$img/root in_arm64 /pgreplica --version 2>&1) || fail "the arm64 image's /pgreplica does not run:" "$out"
[ "$out" = "pgreplica $VERSION" ] || fail "the arm64 image's /pgreplica --version printed: $out"
say "image: the linux/arm64 layer of $(basename "$archive") runs on its own loader and libc: $out"
rm -rf "$img"
