# A node: containerd (Debian) with runc and CNI bridge, kubelet, kube-proxy, static PVs.
# The functions act on the current node: ND (its state dir), NODE, NODE_IP, NODE_NS (its network
# namespace), POD_SUBNET, CGROUP_NODE (its kubelet's cgroup root) and SFX (suffix of its process
# names). The single-node tier leaves them unset: the control plane's namespace, $WORK, $POD_CIDR.
# lib/nodes.sh sets them per node for the multi-node tier (`use_node`).

ND= NODE_NS= SFX= POD_SUBNET= CGROUP_NODE= PODLOGS_DIR= NO_WAIT_READY=; unset SPAWN_NS
node_defaults() {
  ND=${ND:-$WORK}; POD_SUBNET=${POD_SUBNET:-$POD_CIDR}; CGROUP_NODE=${CGROUP_NODE:-$CGROUP_ROOT}
  NODE_NS=${NODE_NS:-$NSPATH}; SFX=${SFX:-}
}
onnode() { nsenter --net="$NODE_NS" "$@"; }
node_ctr() { ctr -a "$ND/containerd/containerd.sock" -n k8s.io "$@"; }

start_containerd() {
  node_defaults
  local c=$ND/containerd
  mkdir -p "$c/root" "$c/state" "$c/opt" "$ND/cni/net.d" "$ND/cni/ipam"
  cat >"$c/config.toml" <<EOC
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ND/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$c/certs.d"
EOC
  registry_hosts_config
  cat >"$ND/cni/net.d/10-pgr.conflist" <<EOC
{"cniVersion":"0.4.0","name":"pgr","plugins":[
 {"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$POD_SUBNET"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$ND/cni/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
EOC
  [ -f "$WORK/netns.before" ] || ls /var/run/netns >"$WORK/netns.before" 2>/dev/null || true
  SPAWN_NS=$NODE_NS spawn "containerd$SFX" containerd --config "$c/config.toml"
  wait_for 30 "containerd$SFX answers" onnode ctr -a "$c/containerd.sock" version || die "containerd$SFX did not start"
}

make_cgroup_root() { # the kubelet's --cgroup-root must exist in every hierarchy (removed on cleanup)
  local h CGROUP_ROOT=$CGROUP_NODE
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] || continue
    mkdir -p "$h${CGROUP_ROOT#/}"
    if [ -f "${h}cpuset.cpus" ]; then
      cat "${h}cpuset.cpus" >"$h${CGROUP_ROOT#/}/cpuset.cpus"
      cat "${h}cpuset.mems" >"$h${CGROUP_ROOT#/}/cpuset.mems"
    fi
  done
}

start_kubelet() {
  node_defaults
  local d=$ND/kubelet; mkdir -p "$d"
  make_cgroup_root
  printf 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\n' >"$WORK/resolv.conf"
  cat >"$d/config.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: $WORK/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_NODE
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$ND/containerd/containerd.sock
imageServiceEndpoint: unix://$ND/containerd/containerd.sock
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
resolvConf: $WORK/resolv.conf
clusterDomain: cluster.local
serializeImagePulls: false
maxPods: 30
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
${PODLOGS_DIR:+podLogsDir: $PODLOGS_DIR}
EOC
  if [ ! -f "$WORK/varlog.before" ]; then   # once: a kubelet started again must not count this run's entries
    ls /var/log/pods /var/log/containers >"$WORK/varlog.before" 2>/dev/null || true
    local dir; for dir in /var/log/pods /var/log/containers; do [ -d "$dir" ] || echo "$dir" >>"$WORK/varlog.newdirs"; done
  fi
  SPAWN_NS=$NODE_NS spawn "kubelet$SFX" "$BIN/kubelet" --config "$d/config.yaml" --kubeconfig "$ND/kubelet.kubeconfig" \
    --root-dir "$d/root" --cert-dir "$d/pki" --hostname-override "$NODE" --node-ip "$NODE_IP" -v 1
  sleep 2; kill -0 "$(spawned_pid "kubelet$SFX")" || { tail -5 "$WORK/logs/kubelet$SFX.log"; die "kubelet$SFX exited"; }
  [ -n "${NO_WAIT_READY:-}" ] && return 0
  wait_for 90 "node $NODE Ready" k wait --for condition=Ready "node/$NODE" --timeout 1s \
    || { tail -30 "$WORK/logs/kubelet$SFX.log"; die "kubelet: node not Ready"; }
}

start_kube_proxy() {
  node_defaults; mkdir -p "$ND"
  cat >"$ND/kube-proxy.yaml" <<EOC
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $WORK/admin.kubeconfig}
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, min: 0}
EOC
  SPAWN_NS=$NODE_NS spawn "kube-proxy$SFX" "$BIN/kube-proxy" --config "$ND/kube-proxy.yaml"
  wait_for "${KP_WAIT:-30}" "kube-proxy$SFX programmed the kubernetes Service" \
    bash -c "nsenter --net=$NODE_NS iptables-save -t nat | grep -q 'default/kubernetes:https'" || die "kube-proxy$SFX did not program iptables"
}

make_pvs() { # static hostPath PVs for the members' claims, owned by the postgres uid
  local i
  for i in 1 2 3 4; do
    mkdir -p "$WORK/pv/$i"; chown 999:999 "$WORK/pv/$i"; chmod 0700 "$WORK/pv/$i"
    cat <<EOP
apiVersion: v1
kind: PersistentVolume
metadata: {name: e2e-pv-$i}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $WORK/pv/$i, type: Directory}
---
EOP
  done | k apply -f - >/dev/null
  log "4 hostPath PersistentVolumes created"
}

remove_var_log() { # the kubelet writes container logs under /var/log/pods whatever its root dir
  [ -f "$WORK/varlog.before" ] || return 0
  local e
  for e in $(ls /var/log/pods 2>/dev/null); do grep -qx "$e" "$WORK/varlog.before" || rm -rf "/var/log/pods/$e"; done
  for e in $(ls /var/log/containers 2>/dev/null); do grep -qx "$e" "$WORK/varlog.before" || rm -f "/var/log/containers/$e"; done
  [ -f "$WORK/varlog.newdirs" ] && xargs -r rmdir <"$WORK/varlog.newdirs" 2>/dev/null
  return 0
}
