# Images built here, never pulled: pause (static C), postgres (debootstrapped bookworm + postgresql-15),
# the operator (our binary + the glibc it links). Each is a single-layer OCI archive for `ctr import`.

IMG_CACHE=$CACHE_ROOT/images
PAUSE_IMAGE=registry.k8s.io/pause:3.6              # the sandbox image containerd 1.6 expects
POSTGRES_IMAGE=localhost/pgreplica-e2e/postgres:15-bookworm
OPERATOR_IMAGE=localhost/pgreplica-e2e/pgreplica:0.1.0

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# oci_archive ROOTFS_DIR NAME OUT CONFIG_JSON_FRAGMENT
oci_archive() {
  local root=$1 name=$2 out=$3 cfg=$4 d; d=$(mktemp -d "$WORK/oci.XXXX")
  mkdir -p "$d/blobs/sha256"
  tar -C "$root" --numeric-owner -cf "$d/layer.tar" .
  local diff; diff=$(sha "$d/layer.tar")
  gzip -1 -n "$d/layer.tar"
  local ld; ld=$(sha "$d/layer.tar.gz"); mv "$d/layer.tar.gz" "$d/blobs/sha256/$ld"
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$cfg" "$diff" >"$d/config.json"
  local cd; cd=$(sha "$d/config.json"); local cs; cs=$(size "$d/config.json"); mv "$d/config.json" "$d/blobs/sha256/$cd"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$cs" "$ld" "$(size "$d/blobs/sha256/$ld")" >"$d/manifest.json"
  local md; md=$(sha "$d/manifest.json"); local ms; ms=$(size "$d/manifest.json"); mv "$d/manifest.json" "$d/blobs/sha256/$md"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$md" "$ms" "$name" "${name##*:}" >"$d/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
  tar -C "$d" -cf "$out.tmp" oci-layout index.json blobs && mv "$out.tmp" "$out"
  rm -rf "$d"
}

build_pause() {
  local out=$IMG_CACHE/pause-3.6.tar
  [ -f "$out" ] && return 0
  local d; d=$(mktemp -d "$WORK/pause.XXXX")
  cat >"$d/pause.c" <<'EOC'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
EOC
  mkdir -p "$d/root"
  gcc -static -Os -o "$d/root/pause" "$d/pause.c"
  oci_archive "$d/root" "$PAUSE_IMAGE" "$out" '{"Entrypoint":["/pause"],"User":"65535:65535"}'
  rm -rf "$d"
}

# Debian's postgres user is made uid/gid 999 before postgresql is installed, as in the official
# postgres images, so the operator's default runAsUser fits.
build_postgres() {
  local out=$IMG_CACHE/postgres-15-bookworm-r1.tar
  [ -f "$out" ] && return 0
  local t0; t0=$(now) r=$IMG_CACHE/rootfs-postgres
  rm -rf "$r"; mkdir -p "$r"
  debootstrap --variant=minbase bookworm "$r" http://deb.debian.org/debian >"$WORK/logs/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/logs/debootstrap.log"; die "debootstrap failed"; }
  chroot "$r" sh -c 'groupadd -r -g 999 postgres && useradd -r -u 999 -g 999 -d /var/lib/postgresql -s /bin/bash postgres' 
  mount -t proc proc "$r/proc"
  chroot "$r" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 && apt-get clean && rm -rf /var/lib/apt/lists/*' \
    >"$WORK/logs/postgres-rootfs.log" 2>&1; local rc=$?
  umount "$r/proc"
  [ $rc = 0 ] || { tail -20 "$WORK/logs/postgres-rootfs.log"; die "installing postgresql-15 in the rootfs failed"; }
  # the package made a cluster we do not want; the agent runs initdb itself
  chroot "$r" sh -c 'pg_dropcluster 15 main 2>/dev/null; rm -rf /var/lib/postgresql/15 /etc/postgresql/15; mkdir -p /var/run/postgresql; chown 999:999 /var/run/postgresql'
  oci_archive "$r" "$POSTGRES_IMAGE" "$out" \
    '{"Env":["PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","PGDATA=/var/lib/postgresql/data"],"User":"999:999","Cmd":["postgres"]}'
  rm -rf "$r"
  log "postgres image built in $(since "$t0")s"
}

# build_operator_image [BINARY NAME OUT]: always rebuilt (the binary changes with the code)
build_operator_image() {
  local bin=${1:-$PGR_BIN} name=${2:-$OPERATOR_IMAGE} out=${3:-$WORK/operator-image.tar}
  local r; r=$(mktemp -d "$WORK/rootfs-operator.XXXX")
  mkdir -p "$r/etc" "$r/tmp"
  cp "$bin" "$r/pgreplica"
  local lib
  for lib in $(ldd "$bin" | awk '$2=="=>" && $3 ~ /^\//{print $3} $1 ~ /^\//{print $1}'); do
    mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"
  done
  echo 'nonroot:x:65532:65532::/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
  echo 'nonroot:x:65532:' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  oci_archive "$r" "$name" "$out" '{"Entrypoint":["/pgreplica"],"Cmd":["operator"],"User":"65532:65532"}'
  rm -rf "$r"
}

build_images() {
  local t0; t0=$(now); mkdir -p "$IMG_CACHE"
  build_pause
  build_postgres
  build_operator_image
  build_operator_image "$PREVIOUS_BIN" "$PREVIOUS_IMAGE" "$WORK/operator-previous.tar"
  log "images ready in $(since "$t0")s: $(du -h "$IMG_CACHE"/pause-3.6.tar "$IMG_CACHE"/postgres-15-bookworm-r1.tar "$WORK/operator-image.tar" | awk '{print $2"="$1}' | xargs -n1 basename | tr '\n' ' ')"
}

import_images() {
  local t0 f; t0=$(now)
  for f in "$IMG_CACHE/pause-3.6.tar" "$IMG_CACHE/postgres-15-bookworm-r1.tar" "$WORK/operator-image.tar" "$WORK/operator-previous.tar"; do
    innet ctr -a "$WORK/containerd/containerd.sock" -n k8s.io images import --no-unpack=false "$f" >>"$WORK/logs/import.log" 2>&1 \
      || { cat "$WORK/logs/import.log"; die "ctr import $f failed"; }
  done
  log "images imported in $(since "$t0")s: $(innet ctr -a "$WORK/containerd/containerd.sock" -n k8s.io images ls -q | grep -v '^sha256' | tr '\n' ' ')"
}
