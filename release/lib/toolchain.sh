# The cross toolchain: a Debian bookworm chroot (amd64) with Debian's rustc-web, the Rust standard
# library for arm64 and the aarch64 cross linker, so the arm64 binary links against bookworm's
# glibc (2.36) like the official postgres images it runs in. qemu-user-static runs its tests.
# Built once, kept in $REL_CACHE (like the Kubernetes build cache). Sourced by release/build.sh.

TOOLCHAIN=$REL_CACHE/toolchain-bookworm-r1
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TOOLCHAIN_PACKAGES="rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev:arm64 libgcc-s1:arm64 qemu-user-static ca-certificates postgresql-15 binutils"

DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# debootstrap, and Debian's archive key to check what it downloads (an Ubuntu host lacks it)
ensure_debootstrap() {
  command -v debootstrap >/dev/null && [ -f "$DEBIAN_KEYRING" ] || apt_host debootstrap debian-archive-keyring
  [ -f "$DEBIAN_KEYRING" ] || fail "no $DEBIAN_KEYRING: install debian-archive-keyring"
}

# ensure_toolchain: make the chroot unless it is cached.
ensure_toolchain() {
  if [ -f "$TOOLCHAIN/.ready" ]; then say "toolchain: cached in $TOOLCHAIN"; return 0; fi
  local t0 tmp=$TOOLCHAIN.tmp; t0=$(date +%s)
  ensure_debootstrap
  rm -rf --one-file-system "$tmp"; mkdir -p "$REL_CACHE"
  say "toolchain: debootstrap bookworm into $tmp"
  # in a private mount namespace: the proc/sys mounts of its second stage cannot outlive a kill
  unshare --mount --propagation private -- debootstrap --keyring="$DEBIAN_KEYRING" --variant=minbase \
    --include=ca-certificates bookworm "$tmp" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
    || fail "debootstrap failed; the last lines of $LOGS/debootstrap.log:" "$(tail -15 "$LOGS/debootstrap.log")"
  # cargo inside the chroot reaches crates.io through the same CAs as the host
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/" 2>/dev/null || true
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$MIRROR" "$MIRROR" >"$tmp/etc/apt/sources.list"
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99no-valid-until"
  mkdir -p "$tmp/etc/postgresql-common"
  echo 'create_main_cluster = false' >"$tmp/etc/postgresql-common/createcluster.conf"
  say "toolchain: installing $TOOLCHAIN_PACKAGES"
  in_root "$tmp" sh -c "update-ca-certificates >/dev/null && dpkg --add-architecture arm64 && apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $TOOLCHAIN_PACKAGES && apt-get clean" \
    >"$LOGS/toolchain-apt.log" 2>&1 \
    || fail "installing the toolchain failed; the last lines of $LOGS/toolchain-apt.log:" "$(tail -15 "$LOGS/toolchain-apt.log")"
  touch "$tmp/.ready"
  rm -rf "$TOOLCHAIN"; mv "$tmp" "$TOOLCHAIN"
  say "toolchain: ready in $(( $(date +%s) - t0 ))s ($(du -sh "$TOOLCHAIN" | cut -f1))"
}

# in_root ROOT CMD...: run CMD chrooted in ROOT, in a private mount namespace (proc, dev, sys and
# the bind mounts below vanish with it: nothing to unmount, even after a kill).
# Env: ROOT_BINDS="HOSTDIR:ROOTDIR[:ro] ..." extra bind mounts.
in_root() {
  local root=$1; shift
  unshare --mount --propagation private -- sh -ec '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount -t sysfs sysfs "$root/sys"
    for b in $ROOT_BINDS; do
      src=${b%%:*}; rest=${b#*:}; dst=${rest%%:*}; mode=${rest#"$dst"}
      mkdir -p "$root$dst"; mount --bind "$src" "$root$dst"
      [ "$mode" = ":ro" ] && mount -o remount,bind,ro "$root$dst"
    done
    exec chroot "$root" "$@"' in_root "$root" "$@"
}
