#!/usr/bin/env bash
# Builds a release into dist/:
#   pgreplica-linux-amd64, pgreplica-linux-arm64   the binary (operator, agent, CLI, kubectl plugin)
#   pgreplica-<version>-image.tar                   the operator image, linux/amd64 + linux/arm64 (OCI)
#   pgreplica-<version>.yaml                        CRD, namespace, RBAC and the operator in one file
#   SHA256SUMS
# Usage: sudo bash release/build.sh     (no Docker: a Debian chroot cross-builds, tar writes the image)
# Env: IMAGE (default localhost/pgreplica:<version>): the operator image reference, written into the
#      image archive and, once, into the release file; PGR_RELEASE_CACHE (default
#      /var/cache/pgreplica-release): toolchain, cargo registry and target dir, kept between runs.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/release/lib/common.sh"
IMAGE=${IMAGE:-localhost/pgreplica:$VERSION}
case ${IMAGE##*/} in *:*) ;; *) fail "IMAGE=$IMAGE has no tag: name it as REPOSITORY:TAG, such as registry.lan:5000/pgreplica:$VERSION" ;; esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$DIST"

ensure_toolchain
build_binaries
build_image
build_release_yaml
(cd "$DIST" && sha256sum pgreplica-linux-amd64 pgreplica-linux-arm64 "pgreplica-$VERSION-image.tar" "pgreplica-$VERSION.yaml" >SHA256SUMS)
say "dist/ ready in $(( $(date +%s) - T0 ))s:"
(cd "$DIST" && ls -l --time-style=+ pgreplica-linux-amd64 pgreplica-linux-arm64 "pgreplica-$VERSION-image.tar" "pgreplica-$VERSION.yaml" | awk '{printf "  %-36s %6.1f MiB\n", $NF, $5/1048576}')
