# Shared state and helpers of the real-Kubernetes e2e. Sourced by run.sh.
# Every process is started through `spawn`, which records its PID; `cleanup` kills exactly those.

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE_ROOT=${PGR_K8S_CACHE:-/var/cache/pgreplica-k8s}
BIN=$CACHE_ROOT/$K8S_VERSION-etcd$ETCD_VERSION/bin
RUN_ID=${RUN_ID:-$$}
NS=pgrk8s-$RUN_ID                      # network namespace
NSPATH=/var/run/netns/$NS
NODE=pgr-node                          # the one node's name
NODE_IP=10.77.0.1                      # on the namespace's loopback; nothing routes out
POD_CIDR=10.88.0.0/16
SVC_CIDR=10.96.0.0/16
APISERVER=https://$NODE_IP:6443
CGROUP_ROOT=/pgrk8s-$RUN_ID            # kubelet's cgroup root, removed on cleanup
T_START=$(date +%s.%N)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { printf '[%6ss] %s\n' "$(elapsed "$T_START")" "$*"; }
stage() { printf '\n[%6ss] === %s\n' "$(elapsed "$T_START")" "$*"; }
die() { log "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }

innet() { nsenter --net="$NSPATH" "$@"; }
k() { innet "$BIN/kubectl" --kubeconfig "$WORK/admin.kubeconfig" "$@"; }

# spawn NAME CMD...: start CMD inside the namespace, logs in $WORK/logs/NAME.log, PID recorded.
spawn() {
  local name=$1; shift
  nsenter --net="${SPAWN_NS:-$NSPATH}" "$@" >>"$WORK/logs/$name.log" 2>&1 &
  local pid=$!
  echo "$pid $name" >>"$WORK/pids"
  log "started $name (pid $pid)"
}

spawned_pid() { awk -v n="$1" '$2==n{p=$1} END{print p}' "$WORK/pids"; }
# stop_spawned NAME [SIGNAL]: stop the last process started as NAME (TERM then KILL, or SIGNAL at
# once); its pid is marked dead so that cleanup never signals a pid the system may have reused
stop_spawned() {
  local pid; pid=$(spawned_pid "$1")
  [ -n "$pid" ] || return 0
  if [ -n "${2:-}" ]; then kill -"$2" "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; else kill_pid "$pid"; fi
  echo "$pid $1" >>"$WORK/pids.dead"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s.
wait_for() {
  local limit=$1 what=$2; shift 2
  local t0; t0=$(now)
  while ! "$@" >/dev/null 2>&1; do
    if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN{exit !(b-a>l)}'; then log "timed out after ${limit}s: $what"; return 1; fi
    sleep 0.5
  done
  log "$what ($(since "$t0")s)"
}

kill_pid() { # TERM, then KILL after 10 s; only PIDs we started
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
}

# kill_shims DIR HOW: containerd shims re-parent to init; ours are the ones whose command line
# names our state dir DIR; HOW is kill_pid (TERM, then KILL) or "kill -KILL"
kill_shims() {
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "containerd-shim.*$1"; then $2 "${p#/proc/}" 2>/dev/null || true; fi
  done
}

SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
save_sysctls() { for s in $SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$WORK/sysctls.saved"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "${WORK:-}" ] || exit "$rc"
  stage "cleanup (exit code $rc)"
  if [ "$rc" != 0 ] && [ -z "${NO_DUMP:-}" ]; then dump_state || true; fi
  # containers first (while containerd still runs), then our processes in reverse start order
  local sock
  for sock in "$WORK"/containerd/containerd.sock "$WORK"/nodes/*/containerd/containerd.sock; do
    [ -S "$sock" ] || continue
    for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$sock" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
    done
    sleep 1
  done
  if [ -f "$WORK/pids" ]; then
    touch "$WORK/pids.dead"
    tac "$WORK/pids" | while read -r pid name; do grep -qxF "$pid $name" "$WORK/pids.dead" || kill_pid "$pid"; done
  fi
  kill_shims "$WORK/" kill_pid
  # mounts under our temp dir (overlays, secrets, shm), deepest first
  findmnt -rn -o TARGET | grep "^$WORK" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # whatever is still running in the kubelet's cgroup root (pause, runc init) was started by this run
  local pass cg
  for pass in 1 2 3; do
    for cg in /sys/fs/cgroup/pids/${CGROUP_ROOT#/} /sys/fs/cgroup/pids/${CGROUP_ROOT#/}-* \
              /sys/fs/cgroup/memory/${CGROUP_ROOT#/} /sys/fs/cgroup/memory/${CGROUP_ROOT#/}-*; do
      [ -d "$cg" ] && find "$cg" -name cgroup.procs -exec cat {} \; 2>/dev/null
    done | sort -u | while read -r p; do kill -KILL "$p" 2>/dev/null; done
    sleep 0.5
  done
  # kubelet's cgroups live under our own root in every hierarchy
  for h in /sys/fs/cgroup/*/; do
    for cg in "$h${CGROUP_ROOT#/}" "$h${CGROUP_ROOT#/}"-*; do
      [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  type remove_var_log >/dev/null 2>&1 && remove_var_log || true
  if [ -f "$WORK/sysctls.saved" ]; then
    while IFS== read -r s v; do sysctl -qw "$s=$v" 2>/dev/null || true; done <"$WORK/sysctls.saved"
  fi
  # pod sandboxes' namespaces that containerd bind-mounted under /var/run/netns during this run
  if [ -f "$WORK/netns.before" ]; then
    for n in $(ls /var/run/netns 2>/dev/null | grep '^cni-'); do grep -qx "$n" "$WORK/netns.before" || ip netns del "$n" 2>/dev/null; done
  fi
  for n in $(cat "$WORK/netns.ours" 2>/dev/null); do ip netns del "$n" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null || true
  if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  log "cleanup done"
  exit "$rc"
}

dump_state() {
  stage "state at failure"
  k get nodes,pods,pvc,pv,svc,endpointslices,pgrc -A -o wide 2>&1 | head -60 || true
  k get events -A --sort-by=.lastTimestamp 2>&1 | tail -40 || true
  for f in "$WORK"/logs/*.log; do echo "--- tail $f"; tail -15 "$f"; done
  for p in $(k get pods -n "${LAB_NS:-default}" -o name 2>/dev/null); do
    echo "--- logs $p"; k logs -n "${LAB_NS:-default}" "$p" --all-containers --tail=30 2>&1 || true
  done
}
