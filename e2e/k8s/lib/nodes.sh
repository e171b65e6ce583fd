# The multi-node tier's machines: the control plane's namespace and three node namespaces (laptop,
# rpi1, rpi2: the hostnames examples/lab.yaml pins its members to) on one Ethernet segment, a bridge
# in a fifth namespace that has no other link. Each node runs its own containerd (state, socket,
# CNI bridge and pod subnet), kubelet (cgroup root, pod logs) and kube-proxy; routes carry each pod
# subnet to its node. Nothing has a route to an address outside these namespaces.
#
#   control plane  10.77.0.1   etcd, kube-apiserver, controller-manager, scheduler, kube-proxy
#                              (the lab's clients run here, as on a machine of the LAN)
#   laptop         10.77.0.11  pods 10.88.1.0/24
#   rpi1           10.77.0.12  pods 10.88.2.0/24
#   rpi2           10.77.0.13  pods 10.88.3.0/24

MN_NODES="laptop rpi1 rpi2"
SW=$NS-sw                                   # the switch's namespace
node_index() { case $1 in laptop) echo 1 ;; rpi1) echo 2 ;; rpi2) echo 3 ;; *) die "unknown node $1" ;; esac; }

use_node() { # use_node NAME: the node functions of lib/node.sh act on NAME from now on
  local i; i=$(node_index "$1")
  NODE=$1; NODE_IP=10.77.0.1$i; POD_SUBNET=10.88.$i.0/24; ND=$WORK/nodes/$1
  NODE_NS=/var/run/netns/$NS-$1; CGROUP_NODE=$CGROUP_ROOT-$1; SFX=-$1; PODLOGS_DIR=$ND/pods
  mkdir -p "$ND"
}
in_node() { nsenter --net="/var/run/netns/$NS-$1" "${@:2}"; }

make_multinode_net() {
  ip netns add "$NS"; ip netns add "$SW"; echo "$SW" >>"$WORK/netns.ours"
  ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge
  ip -n "$SW" link set br0 up
  plug "$NS" cp 10.77.0.1
  innet ip route add "$SVC_CIDR" dev lo      # as in the single-node tier: kube-proxy's DNAT re-routes
  local n i m
  for n in $MN_NODES; do
    ip netns add "$NS-$n"; echo "$NS-$n" >>"$WORK/netns.ours"
    i=$(node_index "$n")
    plug "$NS-$n" "$n" "10.77.0.1$i"
    in_node "$n" ip route add "$SVC_CIDR" dev lo
    in_node "$n" sysctl -qw net.ipv4.ip_forward=1
    innet ip route add "10.88.$i.0/24" via "10.77.0.1$i"
    for m in $MN_NODES; do
      [ "$m" = "$n" ] || in_node "$n" ip route add "10.88.$(node_index "$m").0/24" via "10.77.0.1$(node_index "$m")"
    done
  done
  log "segment 10.77.0.0/24 on a bridge in $SW: control plane 10.77.0.1, $(for n in $MN_NODES; do printf '%s 10.77.0.1%s (pods 10.88.%s.0/24) ' "$n" "$(node_index "$n")" "$(node_index "$n")"; done)"
}

plug() { # plug NETNS PORT IP: a veth from the switch's bridge to eth0 in NETNS
  ip -n "$SW" link add "v-$2" type veth peer name eth0 netns "$1"
  ip -n "$SW" link set "v-$2" master br0 up
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$3/24" dev eth0
  ip -n "$1" link set eth0 up
}

node_certs() { # a client certificate and kubeconfig per kubelet (the Node authorizer needs its name)
  local n
  for n in $MN_NODES; do
    cert "kubelet-$n" "system:node:$n" system:nodes "IP:10.77.0.1$(node_index "$n"),DNS:$n"
    mkdir -p "$WORK/nodes/$n"; kubeconfig "$WORK/nodes/$n/kubelet.kubeconfig" "kubelet-$n"
  done
}

start_nodes() {
  local n t0; t0=$(now)
  for n in $MN_NODES; do
    use_node "$n"
    start_containerd
    import_images
    NO_WAIT_READY=1 start_kubelet
    start_kube_proxy
  done
  for n in $MN_NODES; do
    wait_for 90 "node $n Ready" k wait --for condition=Ready "node/$n" --timeout 1s || { tail -30 "$WORK/logs/kubelet-$n.log"; die "node $n not Ready"; }
  done
  # the clients' machine: kube-proxy in the control plane's namespace (no Node object of that name),
  # so that lab-rw's ClusterIP works there
  ND=$WORK/cp NODE=control-plane NODE_IP=10.77.0.1 NODE_NS=$NSPATH SFX=-cp POD_SUBNET=$POD_CIDR KP_WAIT=60 start_kube_proxy
  make_local_pvs
  log "3 nodes up in $(since "$t0")s: $(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.status.addresses[0].address} {end}')"
}

# Two hostPath volumes per node, each usable only on its node (nodeAffinity), in a default
# StorageClass that binds when a pod is scheduled: a member's claim lands on its pinned node's disk.
make_local_pvs() {
  local n i
  {
    cat <<EOS
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: e2e-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
EOS
    for n in $MN_NODES; do
      for i in 1 2; do
        mkdir -p "$WORK/nodes/$n/pv/$i"; chown 999:999 "$WORK/nodes/$n/pv/$i"; chmod 0700 "$WORK/nodes/$n/pv/$i"
        cat <<EOP
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-$n-$i}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: e2e-local
  hostPath: {path: $WORK/nodes/$n/pv/$i, type: Directory}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$n]}]}]
---
EOP
      done
    done
  } | k apply -f - >/dev/null
  log "StorageClass e2e-local (default, WaitForFirstConsumer) and 2 node-local PersistentVolumes per node"
}

# --- faults of a whole node ---

node_procs() { # the pids of every container process of node $1 (its kubelet's cgroup root)
  local cg
  for cg in "/sys/fs/cgroup/pids/${CGROUP_ROOT#/}-$1" "/sys/fs/cgroup/memory/${CGROUP_ROOT#/}-$1"; do
    [ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} \; 2>/dev/null
  done | sort -u
}

power_off() { # power_off NODE: its link goes silent, then every process of the node dies at once
  local n=$1
  ip -n "$SW" link set "v-$n" down          # the switch's port: the node's routes stay
  stop_spawned "kubelet-$n" KILL
  stop_spawned "kube-proxy-$n" KILL
  stop_spawned "containerd-$n" KILL
  kill_shims "$WORK/nodes/$n/" "kill -KILL"
  local pass
  for pass in 1 2 3; do node_procs "$n" | xargs -r kill -KILL 2>/dev/null || true; sleep 0.2; done
  [ -z "$(node_procs "$n")" ] || log "warning: processes left in $n's cgroups: $(node_procs "$n" | tr '\n' ' ')"
}

power_on() { # power_on NODE: link up, containerd, kubelet and kube-proxy start again on the same disk
  local n=$1
  ip -n "$SW" link set "v-$n" up
  use_node "$n"
  start_containerd
  start_kubelet
  start_kube_proxy
}

# partition NODE / heal NODE: every packet between NODE (and its pods) and the rest of the LAN is
# dropped, in both directions; its processes keep running
PARTITION_RULES=("-t raw -I PREROUTING -i eth0 -j DROP" "-t mangle -I POSTROUTING -o eth0 -j DROP")
partition() { local r; for r in "${PARTITION_RULES[@]}"; do in_node "$1" iptables $r; done; }
heal() { local r; for r in "${PARTITION_RULES[@]}"; do in_node "$1" iptables ${r/-I /-D }; done; }

stop_kubelet() { stop_spawned "kubelet-$1"; }   # SIGTERM, as systemctl stop; containers keep running
start_kubelet_on() { use_node "$1"; start_kubelet; }
