#!/usr/bin/env bash
# Build Kubernetes server binaries (+kubectl) and etcd from the Go module proxy, cached by version.
# Usage: e2e/k8s/build.sh   (env: K8S_VERSION, ETCD_VERSION, PGR_K8S_CACHE)
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE_ROOT=${PGR_K8S_CACHE:-/var/cache/pgreplica-k8s}
CACHE=$CACHE_ROOT/$K8S_VERSION-etcd$ETCD_VERSION
BIN=$CACHE/bin
export GOMODCACHE=$CACHE_ROOT/gomodcache GOCACHE=$CACHE_ROOT/gocache GOMAXPROCS=${GOMAXPROCS:-2}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
K8S_CMDS="kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy"

have_all() { for c in $K8S_CMDS etcd; do [ -x "$BIN/$c" ] || return 1; done; }
if have_all; then echo "build: cached in $BIN (0s)"; exit 0; fi

t0=$(date +%s)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}; patch=${K8S_VERSION##*.}
staging_v=v0.$minor.$patch

# --- etcd wrapper module ---
E=$CACHE/wrap-etcd; mkdir -p "$E"
if [ ! -x "$BIN/etcd" ]; then
  t1=$(date +%s)
  cat > "$E/go.mod" <<EOM
module pgreplica.local/etcdwrap

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOM
  cat > "$E/main.go" <<'EOM'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOM
  (cd "$E" && nice -n 19 go mod tidy && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  echo "build: etcd in $(( $(date +%s) - t1 ))s"
fi
# --- kubernetes wrapper module ---
W=$CACHE/wrap-k8s; mkdir -p "$W"
gomod_file=$(go mod download -json k8s.io/kubernetes@$K8S_VERSION | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod_file" | sort -u)
{
  echo "module pgreplica.local/k8swrap"; echo; echo "go 1.24"; echo
  echo "require k8s.io/kubernetes $K8S_VERSION"; echo
  for m in $staging; do echo "replace $m => $m $staging_v"; done
} > "$W/go.mod"
{
  echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
  for c in $K8S_CMDS; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
  echo ")"
} > "$W/tools.go"
(cd "$W" && nice -n 19 go mod tidy)
ts=$(date +%s); echo "build: k8s modules resolved (+$((ts - t0))s)"
gitmajor=1; gitminor=$minor
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$gitmajor -X k8s.io/component-base/version.gitMinor=$gitminor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=$gitmajor -X k8s.io/client-go/pkg/version.gitMinor=$gitminor"
for c in $K8S_CMDS; do
  [ -x "$BIN/$c" ] && continue
  t1=$(date +%s)
  (cd "$W" && nice -n 19 go build -trimpath -ldflags "$LDF" -o "$BIN/$c.tmp" k8s.io/kubernetes/cmd/$c)
  mv "$BIN/$c.tmp" "$BIN/$c"
  echo "build: $c in $(( $(date +%s) - t1 ))s"
done

echo "build: total $(( $(date +%s) - t0 ))s -> $BIN"
