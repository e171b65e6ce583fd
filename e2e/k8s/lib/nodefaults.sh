# The multi-node tier's scenario: examples/lab.yaml applied unchanged on laptop/rpi1/rpi2, writers
# through lab-rw, and faults of whole nodes. For every fault: a client that holds one connection to
# the primary's pod and never reconnects (as an application pool would), a watcher that asks every
# member pg_is_in_recovery() in rounds, the ledger of acknowledged commits checked on every member
# once the cluster has settled again, and the fault's outage and recovery times.

MN_FAULT_N=0

member_ips() { k get pods -l pgreplica.io/cluster=lab -o jsonpath='{range .items[*]}{.metadata.labels.pgreplica\.io/member}={.status.podIP} {end}'; }
pod_ip() { k get pod "lab-$1" -o jsonpath='{.status.podIP}'; }
node_of() { k get pod "lab-$1" -o jsonpath='{.spec.nodeName}'; }
node_ready() { [ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = "$2" ]; }
settled() { # a is the primary of record, Ready, every member ready
  [ "$(jp '{.status.currentPrimary}')" = a ] && [ "$(jp '{.status.members[*].ready}')" = "true true true" ] \
    && k wait pgrc/lab --for condition=Ready --timeout 1s
}
export -f settled node_ready node_of
wait_not_ready() { wait_for 120 "node $1 NotReady" bash -c "! node_ready $1 True" || die "$1 never NotReady"; }

# ask SQL IP [NETNS]: one answer from the server at IP as the superuser, or nothing (2 s connect
# timeout, 1 s statement timeout)
ask() {
  PGPASSWORD=$MN_PW PGOPTIONS='-c statement_timeout=1000' nsenter --net="${3:-$NSPATH}" \
    psql "host=$2 user=postgres dbname=postgres $CLIENT_TIMEOUTS" -XAtq -c "$1" 2>/dev/null
}

# Every round (about 0.2 s, up to 2 s while a member does not answer) asks each member, in parallel,
# whether it is in recovery: "<time> a=f b=t c=t" (f: writable, ?: no answer). Pod IPs are read
# again every 3 s.
watch_writable() {
  ( ips="" last=0
    while [ ! -e "$WORK/stop-watch" ]; do
      if [ $(($(date +%s) - last)) -ge 3 ]; then ips=$(member_ips 2>/dev/null || echo "$ips"); last=$(date +%s); fi
      t=$(now)
      line=$(for mi in $ips; do ( r=$(ask 'select pg_is_in_recovery()' "${mi#*=}"); echo "${mi%%=*}=${r:-?}" ) & done; wait)
      echo "$t $(echo "$line" | sort | tr '\n' ' ')" >>"$WORK/tl-writable"
      sleep 0.2
    done ) &
  echo "$! watch-writable" >>"$WORK/pids"
}

# watch_inside NODE MEMBER TAG: the same question asked from inside NODE's namespace (its pods'
# bridge), where a partition does not reach: what the isolated member does
watch_inside() {
  ( ip=$(pod_ip "$2")
    while [ ! -e "$WORK/stop-inside-$3" ]; do
      echo "$(now) $(ask 'select pg_is_in_recovery()' "$ip" "/var/run/netns/$NS-$1" || true)" >>"$WORK/inside-$3"
      sleep 0.2
    done ) &
  echo "$! inside-$3" >>"$WORK/pids"
}

# The long-lived client: one psql session to MEMBER's pod, fed an insert every 50 ms through a fifo;
# each acknowledgement is stamped when it arrives. It never reconnects: when the session breaks,
# psql exits and so does the feeder.
start_direct() { # start_direct TAG MEMBER WRITER-ID
  local tag=$1 ip; ip=$(pod_ip "$2")
  mkfifo "$WORK/direct-$tag.in" "$WORK/direct-$tag.out"
  ( while read -r s; do echo "$s $(now)"; done <"$WORK/direct-$tag.out" >>"$WORK/direct-$tag.acked" ) &
  echo "$! direct-stamp-$tag" >>"$WORK/pids"
  PGPASSWORD=$MN_PW nsenter --net="$NSPATH" psql "host=$ip user=postgres dbname=postgres $CLIENT_TIMEOUTS" -XAtq \
    <"$WORK/direct-$tag.in" >"$WORK/direct-$tag.out" 2>"$WORK/direct-$tag.err" &
  echo "$! direct-psql-$tag" >>"$WORK/pids"
  ( n=0; while [ ! -e "$WORK/direct-$tag.stop" ]; do
      n=$((n + 1)); echo "insert into ledger(writer, seq) values ($3, $n) returning seq;"; sleep 0.05
    done ) >"$WORK/direct-$tag.in" &
  echo "$! direct-feed-$tag" >>"$WORK/pids"
  echo "$2 $3" >"$WORK/direct-$tag.member"
}
stop_direct() {
  touch "$WORK/direct-$1.stop"
  stop_spawned "direct-feed-$1" KILL; stop_spawned "direct-psql-$1" KILL; stop_spawned "direct-stamp-$1"
}

# primary_at T: the primary of record at time T (the status watch)
primary_at() { awk -v t="$1" '$1<=t{p=$2} END{print p}' "$WORK/tl-status"; }

# non_primary_acks TAG: acknowledgements the long-lived client got while its member was not the
# primary of record
non_primary_acks() {
  local m; read -r m _ <"$WORK/direct-$1.member"
  [ -s "$WORK/direct-$1.acked" ] || { echo 0; return; }
  [ -s "$WORK/tl-status" ] || { echo "no-status-timeline"; return; }
  awk -v m="$m" 'FILENAME==ARGV[1]{t[++n]=$1; p[n]=$2; next}
       {q=""; for (i = 1; i <= n && t[i] <= $2; i++) q=p[i]; if (q != m) bad++}
       END{print bad+0}' "$WORK/tl-status" "$WORK/direct-$1.acked"
}

# two_writable FROM UNTIL: seconds of rounds in which two or more members answered "not in recovery"
two_writable() {
  awk -v f="$1" -v e="$2" '$1>=f && $1<=e {n=0; for (i = 2; i <= NF; i++) if ($i ~ /=f$/) n++; if (n >= 2 && p) s += $1 - p; if (n >= 2) c++} {p=$1}
    END{printf "%.2f %d", s, c}' "$WORK/tl-writable"
}

# run_fault NAME DESCRIPTION: the fault function fault_NAME sets T_FAULT when the fault begins and
# T_HEAL when it is removed; the cluster must then settle (a primary, every member ready) within 300 s
run_fault() {
  local name=$1 what=$2
  MN_FAULT_N=$((MN_FAULT_N + 1))
  local tag=f$MN_FAULT_N
  stage "fault $MN_FAULT_N ($name): $what"
  wait_for 300 "settled before the fault (a primary, every member ready)" settled || die "not settled before $name"
  start_direct "$tag" a $((100 + MN_FAULT_N))
  wait_for 20 "the long-lived client commits on a" test -s "$WORK/direct-$tag.acked" \
    || { cat "$WORK/direct-$tag.err"; die "the long-lived client did not commit"; }
  T_FAULT=""; T_HEAL=""
  "fault_$name"
  local ok=0
  wait_for 300 "settled after $name (a primary again, every member ready)" settled && ok=1
  local t_ok; t_ok=$(now)
  stop_direct "$tag"
  wide
  check "$name: the cluster settled within 300 s of the fault's removal" [ "$ok" = 1 ]
  local np tw out rec
  np=$(non_primary_acks "$tag")
  read -r tw _ <<<"$(two_writable "$T_FAULT" "$t_ok")"
  check "$name: no acknowledgement from a member that was not the primary of record ($np; long-lived client: $(wc -l <"$WORK/direct-$tag.acked") acknowledged, then: $(tail -1 "$WORK/direct-$tag.err" 2>/dev/null))" [ "$np" = 0 ]
  check "$name: never two members writable (${tw}s of rounds with two)" awk -v s="$tw" 'BEGIN{exit !(s == 0)}'
  out=$(longest_gap "$(awk -v t="$T_FAULT" 'BEGIN{printf "%.9f", t-1}')" "$t_ok")
  rec=$(awk -v a="${T_HEAL:-$T_FAULT}" -v b="$t_ok" 'BEGIN{printf "%.1f", b-a}')
  ledger_checks "$name" 30
  printf '%s|%s|%s|%s|%s|%s\n' "$name" "$out" "$rec" "$np" "$tw" "${FAULT_NOTE:-}" >>"$WORK/mn-results"
  FAULT_NOTE=""
}

# slow_failover_evidence SECONDS: when a failover took longer than 15 s, print what the operator
# and b's agent logged since the fault (their pod logs on their nodes), so that a slow case in CI
# can be read from its output
slow_failover_evidence() {
  awk -v s="$1" 'BEGIN{exit !(s > 15)}' || return 0
  local from; from=$(date -u -d "@${T_FAULT%.*}" +%Y-%m-%dT%H:%M:%S)
  log "failover took ${1}s: the operator's and b's lines since the fault (DEBUG left out)"
  local f
  for f in "$WORK"/nodes/*/pods/pgreplica-system_*/operator/*.log "$WORK"/nodes/*/pods/default_lab-b_*/postgres/*.log; do
    [ -f "$f" ] || continue
    echo "       --- ${f#"$WORK"/}"
    sed 's/\x1b\[[0-9;]*m//g' "$f" | awk -v f="$from" '$1 >= f' | grep -v ' DEBUG ' | cut -c1-400 | head -80 | sed 's/^/       /'
  done
}

# 1. the primary's node loses power: kubelet, containerd, kube-proxy and every container killed
#    at once and its link silent; it stays down until the node is NotReady, then comes back
fault_power_off() {
  T_FAULT=$(now); power_off laptop
  wait_primary 120 b
  local t_p; t_p=$(since "$T_FAULT")
  slow_failover_evidence "$t_p"
  wait_not_ready laptop
  wait_for 60 "writers commit through lab-rw on b" bash -c "cat $WORK/acked-* | awk -v t=$T_FAULT '\$2>t{f=1} END{exit !f}'" || die "no writes after the failover"
  FAULT_NOTE="promoted b after ${t_p}s; laptop off for $(since "$T_FAULT")s"
  power_on laptop; T_HEAL=$(now)
}

# 2. the primary's node is cut off (its PostgreSQL keeps running): its agent cannot renew the lease
#    and must stop PostgreSQL before b is promoted
fault_partition() {
  watch_inside laptop a part
  wait_for 10 "the watcher inside laptop sees a writable" grep -q ' f$' "$WORK/inside-part" || die "cannot watch a from inside laptop"
  T_FAULT=$(now); partition laptop
  wait_primary 120 b
  local t_b
  wait_for 30 "b writable (watcher)" bash -c "awk -v t=$T_FAULT '\$1>t && / b=f/{f=1} END{exit !f}' $WORK/tl-writable" || true
  t_b=$(awk -v t="$T_FAULT" '$1>t && / b=f/{print $1; exit}' "$WORK/tl-writable")
  slow_failover_evidence "$(rel "$T_FAULT" "$t_b" | tr -d +)"
  wait_not_ready laptop
  touch "$WORK/stop-inside-part"; stop_spawned inside-part
  local last_a; last_a=$(awk -v t="$T_FAULT" '$1>t && $2=="f"{l=$1} END{print l}' "$WORK/inside-part")
  log "inside laptop, a last answered as a primary at $(rel "$T_FAULT" "$last_a"); b first writable at $(rel "$T_FAULT" "$t_b")"
  check "partition: the isolated primary stopped taking writes before b was promoted" \
    awk -v a="${last_a:-0}" -v b="${t_b:-0}" 'BEGIN{exit !(b > 0 && a < b)}'
  FAULT_NOTE="a fenced at $(rel "$T_FAULT" "$last_a")s, b writable at $(rel "$T_FAULT" "$t_b")s; healed after $(since "$T_FAULT")s"
  heal laptop; T_HEAL=$(now)
}

# 3. the kubelet of the primary's node stops (containers keep running) until the node is NotReady
fault_kubelet_stop() {
  T_FAULT=$(now); stop_kubelet laptop
  wait_not_ready laptop
  sleep 15   # the fault's duration: 15 s more with the node NotReady
  FAULT_NOTE="primary after the kubelet stopped: $(jp '{.status.currentPrimary}' || true); kubelet down $(since "$T_FAULT")s"
  start_kubelet_on laptop; T_HEAL=$(now)
}

# 4a. the primary's pod is deleted (graceful, as kubectl delete)
fault_pod_delete() {
  T_FAULT=$(now); T_HEAL=$T_FAULT
  k delete pod lab-a --wait=false >/dev/null
  wait_for 120 "a's pod replaced" bash -c "[ -n \"\$(k get pod lab-a -o jsonpath='{.status.podIP}' 2>/dev/null)\" ] && [ \"\$(k get pod lab-a -o jsonpath='{.metadata.deletionTimestamp}')\" = '' ]" || true
  FAULT_NOTE="primary after the delete: $(jp '{.status.currentPrimary}' || true)"
}

# 4b. the operator's container is killed (SIGKILL through its node's containerd) mid-failover: right
#     after the operator saw the primary's data directory vanish
fault_operator_kill() {
  local node cid
  T_FAULT=$(now)
  destroy_pgdata >/dev/null || die "could not delete a's data directory"
  wait_for 30 "the operator saw it: a not ready or b the target" bash -c \
    "[ \"\$(jp '{.status.targetPrimary}')\" = b ] || [ \"\$(jp '{.status.members[?(@.name==\"a\")].ready}')\" = false ]" || true
  read -r node cid <<<"$(k get pod -n pgreplica-system -l app.kubernetes.io/component=operator -o jsonpath='{.items[0].spec.nodeName} {.items[0].status.containerStatuses[0].containerID}')"
  ctr -a "$WORK/nodes/$node/containerd/containerd.sock" -n k8s.io tasks kill -s KILL "${cid#containerd://}" >/dev/null \
    || die "could not kill the operator's container on $node"
  FAULT_NOTE="operator (on $node) killed $(since "$T_FAULT")s after the data loss, primary then: $(jp '{.status.currentPrimary}' || true)"
  log "operator container killed on $node ($FAULT_NOTE)"
  T_HEAL=$T_FAULT
  wait_primary 120 b
}

# 5. the lab's data loss: rm -rf of the primary's PGDATA in its pod
fault_data_loss() {
  T_FAULT=$(now); T_HEAL=$T_FAULT
  destroy_pgdata >/dev/null || die "could not delete a's data directory"
  wait_primary 120 b
}

multinode_scenario() {
  stage "lab: kubectl apply -f examples/lab.yaml (unchanged: a on laptop, b on rpi1, c on rpi2)"
  local t0; t0=$(now)
  k apply -f "$REPO/examples/lab.yaml" >/dev/null
  k wait pgrc/lab --for condition=Ready --timeout 300s >/dev/null || die "lab not Ready in 300s"
  log "lab Ready in $(since "$t0")s"; wide
  check "members on their pinned nodes (a laptop, b rpi1, c rpi2)" \
    bash -c "[ \"\$(node_of a) \$(node_of b) \$(node_of c)\" = 'laptop rpi1 rpi2' ]"
  check "each member's volume is on its node (claims bound to node-local volumes)" bash -c \
    "[ \"\$(k get pvc -l pgreplica.io/cluster=lab -o jsonpath='{range .items[*]}{.spec.volumeName} {end}' | tr ' ' '\n' | sed 's/^e2e-pv-//; s/-[0-9]\$//' | sort | tr '\n' ' ')\" = 'laptop rpi1 rpi2 ' ]"
  psql_in a "create table if not exists ledger(writer int, seq int, at timestamptz default now(), primary key (writer, seq))" >/dev/null
  # a server that vanishes without a reset (a node powered off or cut off) fails a session in about
  # 3 s, as an application's driver with TCP timeouts set would (the writers, the watcher, the client)
  CLIENT_TIMEOUTS="connect_timeout=2 tcp_user_timeout=3000 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"
  MN_PW=$(k get secret lab-superuser -o jsonpath='{.data.password}' | base64 -d)
  local rw i; rw=$(k get svc lab-rw -o jsonpath='{.spec.clusterIP}')
  rm -f "$WORK/stop" "$WORK"/acked-* "$WORK"/failed-*
  observe_timeline
  watch_writable
  for i in $(seq 1 "$WRITERS"); do writer "$i" "$rw" "$MN_PW" & echo "$! writer-$i" >>"$WORK/pids"; done
  wait_for 20 "writers commit through lab-rw" bash -c "cat $WORK/acked-* 2>/dev/null | grep -q ." || die "no writes"
  local f
  for f in ${MN_FAULTS:-power_off partition kubelet_stop pod_delete operator_kill data_loss}; do
    case $f in
      power_off) run_fault power_off "power-off of laptop (a's node): kubelet, containerd, kube-proxy and containers killed at once, link down" ;;
      partition) run_fault partition "laptop partitioned from the control plane and the other nodes (packets dropped; a keeps running)" ;;
      kubelet_stop) run_fault kubelet_stop "the kubelet on laptop stopped (containers keep running) until NotReady" ;;
      pod_delete) run_fault pod_delete "kubectl delete pod lab-a" ;;
      operator_kill) run_fault operator_kill "rm -rf of a's PGDATA, then the operator's container killed mid-failover" ;;
      data_loss) run_fault data_loss "rm -rf of a's PGDATA (the lab's data loss)" ;;
      *) die "unknown fault $f" ;;
    esac
  done
  touch "$WORK/stop" "$WORK/stop-watch"; stop_timeline
  local p; for p in $(awk '$2 ~ /^writer-/{print $1}' "$WORK/pids"); do wait "$p" 2>/dev/null || true; done
  stage "multi-node results ($WRITERS writers through lab-rw; acknowledged: $(ledger_csv | wc -l))"
  printf '  %-14s %9s %10s %14s %13s  %s\n' fault outage recovery non-primary two-writable notes
  local name out rec np tw note
  while IFS='|' read -r name out rec np tw note; do
    printf '  %-14s %8ss %9ss %14s %12ss  %s\n' "$name" "$out" "$rec" "$np" "$tw" "$note"
  done <"$WORK/mn-results"
  log "outage = longest gap between acknowledgements through lab-rw from 1 s before the fault until settled;"
  log "  recovery = from the fault's removal (power on, heal, kubelet start; else the fault) until a is primary and every member ready"
}
