#!/usr/bin/env bash
# Real-Kubernetes end-to-end test of pgreplica (issue #6). One entry command:
#
#   bash e2e/k8s/run.sh [control-plane|all|multi-node]      (default: all)
#
# control-plane: etcd + kube-apiserver + controller-manager + scheduler in a network namespace with
#                no route out; API contract checks; the operator as a process reconciling lab.
# all:           + containerd/runc/CNI, kubelet, kube-proxy, the release's image archive imported and
#                its file applied (release/build.sh runs first, both tiers), the lab scenario
#                (failover, re-clone, failback, zero lost acknowledged commits).
# multi-node:    the control plane and three nodes (laptop, rpi1, rpi2), each in its own network
#                namespace with its own containerd, kubelet and kube-proxy; examples/lab.yaml applied
#                unchanged; faults of whole nodes (power-off, partition, kubelet stop), of pods and of
#                the operator, each with its ledger (docs/k8s-e2e.md). MN_FAULTS picks some.
# Env: PGR_K8S_CACHE (default /var/cache/pgreplica-k8s), KEEP_WORK=1 keeps the temp dir.
set -euo pipefail
TIER=${1:-all}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/e2e/k8s
for f in common controlplane apichecks images node nodes nodefaults registry lab trust daytwo previous; do source "$HERE/lib/$f.sh"; done
[ "$(id -u)" = 0 ] || { echo "run.sh needs root (network namespaces, containerd)"; exit 1; }

stage "prerequisites"
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v nsenter >/dev/null || need+=(util-linux)
case $TIER in all|control-plane|multi-node) ;; *) echo "usage: run.sh [control-plane|all|multi-node]"; exit 2 ;; esac
if [ "$TIER" != control-plane ]; then
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v iptables >/dev/null || need+=(iptables)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v psql >/dev/null || need+=(postgresql-client-15)
  command -v curl >/dev/null || need+=(curl)
  command -v jq >/dev/null || need+=(jq)
  command -v skopeo >/dev/null || need+=(skopeo)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

stage "build Kubernetes $K8S_VERSION and etcd $ETCD_VERSION (cached in $CACHE_ROOT)"
t_build=$(now)
PGR_K8S_CACHE=$CACHE_ROOT K8S_VERSION=$K8S_VERSION ETCD_VERSION=$ETCD_VERSION "$HERE/build.sh" | grep '^build:'
log "kubernetes build step took $(since "$t_build")s"
stage "the release: bash release/build.sh (binaries, image archive, release file in dist/)"
t_rel=$(now)
IMAGE=$OPERATOR_IMAGE bash "$REPO/release/build.sh" | sed 's/^/       /'
PGR_BIN=$REPO/dist/pgreplica-linux-amd64
log "release/build.sh took $(since "$t_rel")s"

WORK=$(mktemp -d /tmp/pgr-k8s.XXXXXX); mkdir -p "$WORK/logs"; : >"$WORK/pids"
export BIN WORK NSPATH; export -f k innet
trap cleanup EXIT INT TERM
log "work dir $WORK, network namespace $NS"

if [ "$TIER" = multi-node ]; then
  stage "network: the control plane's namespace and three nodes' on one bridge"
  make_multinode_net
  make_pki
  node_certs
  start_control_plane
  stage "images (built here, never pulled)"
  save_sysctls
  build_images_current
  stage "nodes laptop, rpi1, rpi2: containerd, kubelet, kube-proxy each"
  start_nodes
  stage "operator deployed from the release file, kept off laptop (the node the faults hit)"
  # MN_OPERATOR_NODE=rpi1 places it on that node (the others cordoned meanwhile)
  off=laptop; [ -n "${MN_OPERATOR_NODE:-}" ] && off=$(echo $MN_NODES | tr ' ' '\n' | grep -vx "$MN_OPERATOR_NODE" | tr '\n' ' ')
  k cordon $off >/dev/null
  install_manifests
  k rollout status -n pgreplica-system deploy/pgreplica-operator --timeout 120s || die "operator Deployment not available"
  k uncordon $off >/dev/null
  log "operator on $(k get pod -n pgreplica-system -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].spec.nodeName}')"
  t_mn=$(now)
  multinode_scenario
  log "multi-node scenario took $(since "$t_mn")s; the whole tier $(elapsed "$T_START")s"
  stage "result"
  echo "$CHECKS_PASSED passed, $CHECKS_FAILED failed"
  [ "$CHECKS_FAILED" = 0 ]
  exit
fi

stage "control plane"
make_netns
make_pki
start_control_plane
install_manifests
api_contract_checks
operator_process_checks

if [ "$TIER" = all ]; then
  stage "the previous release's operator, for the upgrade (e2e/k8s/previous-release)"
  build_previous
  stage "images (built here, never pulled)"
  save_sysctls
  build_images
  stage "node: containerd, kubelet, kube-proxy"
  t_node=$(now)
  start_containerd
  import_images
  start_kubelet
  start_kube_proxy
  make_pvs
  log "node up in $(since "$t_node")s"
  stage "operator deployed from the release file: kubectl apply --server-side -f dist/$(basename "$RELEASE_FILE")"
  t_op=$(now)
  install_manifests
  k rollout status -n pgreplica-system deploy/pgreplica-operator --timeout 120s || die "operator Deployment not available"
  log "operator available in $(since "$t_op")s"
  registry_checks
  lab_scenario
  recreate_checks
fi

stage "result"
echo "$CHECKS_PASSED passed, $CHECKS_FAILED failed"
[ "$CHECKS_FAILED" = 0 ]
