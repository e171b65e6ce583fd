# The binaries for both architectures, built in the toolchain chroot by one cargo invocation (build
# scripts and proc macros are compiled once for both). The source is mounted read-only at /src; the
# cargo registry and the target directory live in $REL_CACHE, so a fresh clone builds incrementally.

TARGETS="x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu"
GLIBC_MAX=2.36   # Debian bookworm, like the official postgres images the agent runs in

# in_toolchain CMD...: CMD in the chroot, with the source, the cargo home and the target dir mounted.
in_toolchain() {
  mkdir -p "$REL_CACHE/cargo-home" "$REL_CACHE/target"
  ROOT_BINDS="$REPO:/src:ro $REL_CACHE/cargo-home:/cargo $REL_CACHE/target:/target" in_root "$TOOLCHAIN" \
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root CARGO_HOME=/cargo CARGO_TARGET_DIR=/target \
    CARGO_TERM_COLOR=never CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static \
    PGREPLICA_TEST_PG_BIN="${PGREPLICA_TEST_PG_BIN:-}" \
    sh -c 'cd /src && "$@"' in_toolchain "$@"
}

build_binaries() {
  local t0 t; t0=$(date +%s)
  say "binaries: cargo build --release --locked for $TARGETS (log: $LOGS/cargo-release.log)"
  local args=(); for t in $TARGETS; do args+=(--target "$t"); done
  in_toolchain nice -n 10 cargo build --release --locked -p pgreplica "${args[@]}" >"$LOGS/cargo-release.log" 2>&1 \
    || fail "cargo build failed; the last lines of $LOGS/cargo-release.log:" "$(tail -30 "$LOGS/cargo-release.log")"
  cp "$REL_CACHE/target/x86_64-unknown-linux-gnu/release/pgreplica" "$DIST/pgreplica-linux-amd64"
  cp "$REL_CACHE/target/aarch64-unknown-linux-gnu/release/pgreplica" "$DIST/pgreplica-linux-arm64"
  local arch glibc
  for arch in amd64 arm64; do
    glibc=$(needed_glibc "$DIST/pgreplica-linux-$arch")
    [ "$(printf '%s\n%s\n' "$glibc" "$GLIBC_MAX" | sort -V | tail -1)" = "$GLIBC_MAX" ] \
      || fail "pgreplica-linux-$arch needs glibc $glibc, more than bookworm's $GLIBC_MAX: it would not run in postgres:*-bookworm"
    say "binaries: pgreplica-linux-$arch $(du -h "$DIST/pgreplica-linux-$arch" | cut -f1), needs glibc ≥ $glibc"
  done
  say "binaries: built in $(( $(date +%s) - t0 ))s"
}

# needed_glibc BINARY: the newest GLIBC_x.y symbol version it needs.
needed_glibc() {
  readelf_of "$1" -V | { grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -uV | tail -1
}

# readelf_of FILE ARGS...: the toolchain's readelf (it reads ELF files of any architecture).
readelf_of() {
  local f=$1 copy; shift
  copy=$(mktemp "$TOOLCHAIN/tmp/elf.XXXX")
  cp "$f" "$copy"
  chroot "$TOOLCHAIN" readelf --wide "$@" "/tmp/${copy##*/}" || { rm -f "$copy"; fail "readelf $* $f failed"; }
  rm -f "$copy"
}
