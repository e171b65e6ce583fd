# Images built here, never pulled: pause (static C) and postgres (debootstrapped bookworm +
# postgresql-15), single-layer OCI archives for `ctr import`; the operator image is the release's
# (dist/, from release/build.sh), imported as a user imports it. The previous release's operator
# image is made here from its binary.

source "$REPO/release/lib/oci.sh"
IMG_CACHE=$CACHE_ROOT/images
PAUSE_IMAGE=registry.k8s.io/pause:3.6              # the sandbox image containerd 1.6 expects
# The member image stands in for the official postgres:15-bookworm under its name (the CRD's
# default, so the lab needs no image): the same PostgreSQL major version from Debian bookworm's
# packages, the postgres user uid/gid 999, PGDATA and PATH as the official image sets them.
POSTGRES_IMAGE=postgres:15-bookworm
POSTGRES_REF=docker.io/library/$POSTGRES_IMAGE
POSTGRES_ARCHIVE=$IMG_CACHE/postgres-15-bookworm-r2.tar
RELEASE_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/operator/Cargo.toml" | head -1)
OPERATOR_IMAGE=localhost/pgreplica:$RELEASE_VERSION   # release/build.sh's default IMAGE
OPERATOR_ARCHIVE=$REPO/dist/pgreplica-$RELEASE_VERSION-image.tar
RELEASE_FILE=$REPO/dist/pgreplica-$RELEASE_VERSION.yaml

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
  TMPDIR=$WORK oci_archive "$PAUSE_IMAGE" "$out" '{"Entrypoint":["/pause"],"User":"65535:65535"}' "amd64=$d/root" >/dev/null
  rm -rf "$d"
}

# Debian's postgres user is made uid/gid 999 before postgresql is installed, as in the official
# postgres images, so the operator's default runAsUser fits.
build_postgres() {
  local out=$POSTGRES_ARCHIVE
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
  TMPDIR=$WORK oci_archive "$POSTGRES_REF" "$out" \
    '{"Env":["PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","PGDATA=/var/lib/postgresql/data"],"User":"999:999","Cmd":["postgres"]}' \
    "amd64=$r" >/dev/null
  rm -rf "$r"
  log "postgres image built in $(since "$t0")s"
}

# build_operator_image BINARY NAME OUT: the previous release's operator image (the current one is
# the release's image archive)
build_operator_image() {
  local bin=$1 name=$2 out=$3
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
  TMPDIR=$WORK oci_archive "$name" "$out" '{"Entrypoint":["/pgreplica"],"Cmd":["operator"],"User":"65532:65532"}' "amd64=$r" >/dev/null
  rm -rf "$r"
}

build_images_current() { # pause and postgres; the operator's is the release's archive
  mkdir -p "$IMG_CACHE"
  build_pause
  build_postgres
}

build_images() {
  local t0; t0=$(now)
  build_images_current
  build_operator_image "$PREVIOUS_BIN" "$PREVIOUS_IMAGE" "$WORK/operator-previous.tar"
  log "images ready in $(since "$t0")s: $(du -h "$IMG_CACHE"/pause-3.6.tar "$POSTGRES_ARCHIVE" "$OPERATOR_ARCHIVE" | awk '{print $2"="$1}' | xargs -n1 basename | tr '\n' ' ')"
}

import_images() {
  node_defaults
  local t0 f; t0=$(now)
  # the release's image as a user imports it on a k3s node (`k3s ctr images import` is this ctr)
  for f in "$IMG_CACHE/pause-3.6.tar" "$POSTGRES_ARCHIVE" "$OPERATOR_ARCHIVE" "$WORK/operator-previous.tar"; do
    [ "$TIER" = multi-node ] && [ "$f" = "$WORK/operator-previous.tar" ] && continue   # no upgrade in that tier
    node_ctr images import --no-unpack=false "$f" >>"$WORK/logs/import.log" 2>&1 \
      || { cat "$WORK/logs/import.log"; die "ctr import $f failed"; }
  done
  log "images imported${SFX:+ on ${SFX#-}} in $(since "$t0")s: $(node_ctr images ls -q | grep -v '^sha256' | tr '\n' ' ')"
}
