# An arm64 Debian bookworm root with PostgreSQL 15, made without emulation: debootstrap's first
# stage resolves and downloads the packages for arm64, and every package is unpacked here with
# dpkg-deb (no maintainer scripts run; the few things they would do are done below). Cached.

ARM64_ROOT=$REL_CACHE/arm64-root-bookworm-pg15-r2

ensure_arm64_root() {
  if [ -f "$ARM64_ROOT/.ready" ]; then say "arm64 root: cached in $ARM64_ROOT"; return 0; fi
  local t0 tmp=$ARM64_ROOT.tmp deb n=0; t0=$(date +%s)
  ensure_debootstrap
  rm -rf --one-file-system "$tmp"
  say "arm64 root: debootstrap --foreign --arch=arm64 with postgresql-15 into $tmp"
  debootstrap --keyring="$DEBIAN_KEYRING" --foreign --arch=arm64 --variant=minbase --include=postgresql-15 bookworm "$tmp" "$MIRROR" \
    >"$LOGS/debootstrap-arm64.log" 2>&1 \
    || fail "debootstrap (arm64) failed; the last lines of $LOGS/debootstrap-arm64.log:" "$(tail -15 "$LOGS/debootstrap-arm64.log")"
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --keep-directory-symlink || fail "unpacking $deb failed"
    n=$((n + 1))
  done
  rm -f "$tmp"/var/cache/apt/archives/*.deb
  # the first stage leaves its own files and a /proc -> /proc symlink for its second stage
  rm -rf "$tmp/debootstrap" "$tmp/proc"; mkdir -p "$tmp/proc" "$tmp/sys"
  # what base-passwd's and postgresql-common's scripts would have made: the users, and a postgres
  # uid of 999 as in the official postgres images
  printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n' >"$tmp/etc/passwd"
  printf 'root:x:0:\npostgres:x:999:\n' >"$tmp/etc/group"
  mkdir -p "$tmp/var/run/postgresql" "$tmp/var/tmp" && chmod 1777 "$tmp/var/tmp"
  [ -x "$tmp/usr/lib/postgresql/15/bin/postgres" ] || fail "the arm64 root has no PostgreSQL 15 server"
  touch "$tmp/.ready"
  rm -rf "$ARM64_ROOT"; mv "$tmp" "$ARM64_ROOT"
  say "arm64 root: $n packages unpacked in $(( $(date +%s) - t0 ))s ($(du -sh "$ARM64_ROOT" | cut -f1))"
}

# in_arm64 CMD...: CMD chrooted in the arm64 root, where arm64 programs run under qemu-user. The
# binfmt_misc registration lives in a user namespace of our own (Linux ≥ 6.7): nothing is registered
# on the host. uids 0-65535 map to themselves, so root inside is root (PostgreSQL then runs as 999).
# Env: ARM64_CHROOT another arm64 root (default $ARM64_ROOT).
in_arm64() {
  local qemu=$TOOLCHAIN/usr/bin/qemu-aarch64-static fifo pid rc=0
  [ -x "$qemu" ] || fail "no qemu-aarch64-static in the toolchain"
  fifo=$(mktemp -u "$REL_CACHE/ns-go.XXXX"); mkfifo "$fifo"; mkdir -p "$REL_CACHE/binfmt"
  # the namespace's uid/gid maps are written from here (util-linux would need newuidmap and
  # /etc/subuid entries for root); the script inside waits for them on the fifo
  unshare --user --mount --pid --fork --propagation private -- sh -ec '
    read go <"$1"; root=$2 qemu=$3 mnt=$4; shift 4
    mount -t binfmt_misc binfmt_misc "$mnt"
    # the aarch64 ELF header (magic and mask as qemu-user-static ships them); F: qemu is opened now,
    # so it runs inside the chroot too; P: argv[0] is kept
    printf "%s" ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:$qemu:FP" >"$mnt/register"
    mkdir -p "$root/proc" "$root/dev"
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" "$@"' in_arm64 "$fifo" "${ARM64_CHROOT:-$ARM64_ROOT}" "$qemu" "$REL_CACHE/binfmt" "$@" &
  pid=$!
  while [ "$(readlink "/proc/$pid/ns/user" 2>/dev/null)" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.05; done
  echo '0 0 65536' >"/proc/$pid/uid_map" && echo '0 0 65536' >"/proc/$pid/gid_map" \
    || { kill "$pid"; rm -f "$fifo"; fail "could not map uids into the arm64 user namespace"; }
  echo go >"$fifo"
  wait "$pid" || rc=$?
  rm -f "$fifo"
  return $rc
}
