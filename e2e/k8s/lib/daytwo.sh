# Day two under the writers of stage 2: spec changes reach running members one at a time
# (standbys first, the primary last after a switchover and the automatic failback).
# Each step prints the longest gap between acknowledged commits while it ran.

CTR() { innet ctr -a "$WORK/containerd/containerd.sock" -n k8s.io "$@"; }

# gap FROM TO: the longest time without an acknowledged commit between FROM and TO (unix times)
gap() {
  cat "$WORK"/acked-* | awk -v a="$1" -v b="$2" '$2>=a && $2<=b {print $2}' | sort -n \
    | awk -v a="$1" -v b="$2" 'BEGIN{p=a; m=0} {if ($1-p>m) m=$1-p; p=$1} END{if (b-p>m) m=b-p; printf "%.2f", m}'
}

settled_on_a() {
  [ "$(jp '{.status.currentPrimary}')" = a ] && [ "$(jp '{.status.targetPrimary}')" = a ] \
    && k wait pgrc/lab --for condition=Ready --timeout 1s
}
every_member() { # every_member SQL VALUE
  local m; for m in a b c; do [ "$(psql_in "$m" "$1" 2>/dev/null)" = "$2" ] || return 1; done
}
pod_images() { k get pods -l pgreplica.io/cluster=lab -o jsonpath='{range .items[*]}{.spec.containers[0].image}{" "}{end}'; }
all_pods() { # all_pods IMAGE: every member pod runs IMAGE in its postgres container
  local i; for i in $(pod_images); do [ "$i" = "$1" ] || return 1; done; [ -n "$(pod_images)" ]
}
agents_from() { # agents_from IMAGE: every member pod's agent comes from IMAGE
  local i; for i in $(k get pods -l pgreplica.io/cluster=lab -o jsonpath='{range .items[*]}{.spec.initContainers[0].image}{" "}{end}'); do
    [ "$i" = "$1" ] || return 1; done
}
export -f every_member pod_images all_pods agents_from settled_on_a 2>/dev/null || true

# step NAME: run the rest as a step and report its outage from the ledger
day_two_step() {
  local name=$1 t0 t1; shift
  t0=$(now)
  "$@" || { DAY_TWO+="| $name | failed | - |"$'\n'; return 1; }
  t1=$(now)
  local took g; took=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}'); g=$(gap "$t0" "$t1")
  log "$name: done in ${took}s, longest gap between acknowledged commits ${g}s"
  DAY_TWO+="| $name | ${took} s | ${g} s |"$'\n'
}

restart_parameter() {
  k patch pgrc lab --type merge -p '{"spec":{"postgres":{"parameters":{"shared_buffers":"48MB"}}}}' >/dev/null
  wait_for 240 "shared_buffers 48MB on a, b and c" every_member "show shared_buffers" 48MB || return 1
  wait_for 120 "back on a, Ready" settled_on_a || return 1
  check "observedGeneration follows the spec" bash -c \
    "[ \"\$(k get pgrc lab -o jsonpath='{.status.observedGeneration}')\" = \"\$(k get pgrc lab -o jsonpath='{.metadata.generation}')\" ]"
  k get events --field-selector involvedObject.name=lab --sort-by=.lastTimestamp 2>/dev/null \
    | grep -E "SpecChanged|Restarting|SwitchoverStarted|FailbackStarted" | tail -6 | sed 's/^/       /'
  check "a SpecChanged Event says what changed" bash -c \
    "k get events --field-selector involvedObject.name=lab,reason=SpecChanged -o jsonpath='{.items[*].message}' | grep -q 'shared_buffers = 48MB'"
}

new_image() {
  local image="${POSTGRES_IMAGE}-day2"
  CTR images tag --force "$POSTGRES_REF" "docker.io/library/$image" >/dev/null || return 1
  k patch pgrc lab --type merge -p "{\"spec\":{\"postgres\":{\"image\":\"$image\"}}}" >/dev/null
  wait_for 300 "every member pod runs $image" all_pods "$image" || return 1
  wait_for 120 "back on a, Ready" settled_on_a
}

# operator_to IMAGE ENV: the Deployment moved to IMAGE (as an upgrade does); every member's agent is
# rolled to the binary of IMAGE, one member at a time, and the cluster settles on a. The previous
# release learns its image from PGREPLICA_OPERATOR_IMAGE (ENV "PGREPLICA_OPERATOR_IMAGE=IMAGE"); this
# one reads it from its own pod, so the upgrade removes the variable (ENV "PGREPLICA_OPERATOR_IMAGE-").
operator_to() {
  local image=$1 env=$2
  k -n pgreplica-system set image deploy/pgreplica-operator "operator=$image" >/dev/null || return 1
  k -n pgreplica-system set env deploy/pgreplica-operator "$env" >/dev/null || return 1
  k rollout status -n pgreplica-system deploy/pgreplica-operator --timeout 120s >/dev/null || return 1
  wait_for 300 "every member's agent comes from $image" agents_from "$image" || return 1
  wait_for 120 "back on a, Ready" settled_on_a
}
operator_previous() { operator_to "$PREVIOUS_IMAGE" "PGREPLICA_OPERATOR_IMAGE=$PREVIOUS_IMAGE"; }
operator_upgrade() { operator_to "$OPERATOR_IMAGE" "PGREPLICA_OPERATOR_IMAGE-"; }

pod_gone() { ! k get pod "lab-$1" >/dev/null 2>&1; }
slot_on_a() { [ "$(psql_in a "select count(*) from pg_replication_slots where slot_name='pgreplica_$1'")" = "$2" ]; }
in_status() { [ -n "$(jp "{.status.members[?(@.name==\"$1\")].name}")" ]; }
export -f pod_gone slot_on_a in_status 2>/dev/null || true

# a board joins: d (Async) on the fourth volume, cloned from the primary, streaming
member_added() {
  k patch pgrc lab --type json -p '[{"op":"add","path":"/spec/members/-","value":{"name":"d","replication":"Async","nodeSelector":{"kubernetes.io/hostname":"'"$NODE"'"},"storage":{"size":"10Gi"}}}]' >/dev/null || return 1
  wait_for 240 "d cloned and ready" member_ready d || return 1
  wait_for 60 "d streams from a" streaming_to a d || return 1
  wait_for 30 "a keeps a slot for d" slot_on_a d 1
}

# and is retired: its pod goes, its slot is dropped, its volume claim is kept (volumeReclaim Retain)
member_removed() {
  k patch pgrc lab --type json -p '[{"op":"test","path":"/spec/members/3/name","value":"d"},{"op":"remove","path":"/spec/members/3"}]' >/dev/null || return 1
  wait_for 120 "d's pod deleted" pod_gone d || return 1
  wait_for 60 "d's slot dropped on a" slot_on_a d 0 || return 1
  wait_for 30 "d out of status" bash -c '! in_status d' || return 1
  k get pvc lab-d >/dev/null || { log "d's volume claim was deleted although volumeReclaim is Retain"; return 1; }
  wait_for 120 "back on a, Ready" settled_on_a
}

volumes_condition() { # volumes_condition STATUS REASON
  [ "$(jp '{.status.conditions[?(@.type=="VolumesMatchSpec")].status}')" = "$1" ] \
    && [ "$(jp '{.status.conditions[?(@.type=="VolumesMatchSpec")].reason}')" = "$2" ]
}
export -f volumes_condition 2>/dev/null || true

# c's storage.size raised on volumes that cannot grow (static hostPath, no storage class): the
# condition says so and names the fix; set back, it clears. Nobody restarts.
storage_refused() {
  local started; started=$(conf_times)
  k patch pgrc lab --type json -p '[{"op":"replace","path":"/spec/members/2/storage/size","value":"20Gi"}]' >/dev/null || return 1
  wait_for 60 "VolumesMatchSpec False (VolumeNotExpandable)" volumes_condition False VolumeNotExpandable || return 1
  log "VolumesMatchSpec: $(jp '{.status.conditions[?(@.type=="VolumesMatchSpec")].message}')"
  k patch pgrc lab --type json -p '[{"op":"replace","path":"/spec/members/2/storage/size","value":"10Gi"}]' >/dev/null || return 1
  wait_for 60 "VolumesMatchSpec True" volumes_condition True VolumesMatchSpec || return 1
  [ "$(conf_times | awk '{print $1, $3}')" = "$(echo "$started" | awk '{print $1, $3}')" ] \
    || { log "a member restarted for a storage change"; return 1; }
}

restart_member() {
  # through kubectl's plugin mechanism: the binary found on PATH as kubectl-pgrc
  mkdir -p "$WORK/bin"; ln -sf "$PGR_BIN" "$WORK/bin/kubectl-pgrc"
  KUBECONFIG=$WORK/admin.kubeconfig PATH="$WORK/bin:$PATH" innet "$BIN/kubectl" pgrc restart lab c -n "$LAB_NS" --timeout=3m 2>&1 | sed 's/^/       /'
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  wait_for 120 "back on a, Ready" settled_on_a
}

# kubectl pgrc pause-replay lab c: c applies no more WAL though it keeps receiving it, leaves -r,
# and status says when its data is from; resume-replay: it applies again and is back in -r
# (the delayed c is never in -ro).
pod_label() { k get pod "lab-$1" -o jsonpath="{.metadata.labels.pgreplica\\.io/$2}"; }
frozen_at() { jp '{.status.members[?(@.name=="c")].frozenAt}'; }
c_paused() {
  [ "$(psql_in c "select pg_is_wal_replay_paused()")" = t ] && [ -n "$(frozen_at)" ] \
    && [ "$(pod_label c serving)" != true ]
}
received_past() { # received_past LSN SINCE: 4 s (c's delay and more) since SINCE, and c received WAL beyond LSN
  awk -v a="$2" -v b="$(now)" 'BEGIN{exit !(b-a>4)}' \
    && [ "$(psql_in c "select pg_last_wal_receive_lsn() > '$1'")" = t ]
}
c_serving() {
  [ "$(psql_in c "select pg_is_wal_replay_paused()")" = f ] && [ -z "$(frozen_at)" ] \
    && [ "$(pod_label c serving)" = true ]
}
pgrc() {
  mkdir -p "$WORK/bin"; ln -sf "$PGR_BIN" "$WORK/bin/kubectl-pgrc"
  KUBECONFIG=$WORK/admin.kubeconfig PATH="$WORK/bin:$PATH" innet "$BIN/kubectl" pgrc "$@" -n "$LAB_NS" 2>&1 | sed 's/^/       /'
  return "${PIPESTATUS[0]}"
}
export -f pod_label frozen_at c_paused received_past c_serving 2>/dev/null || true

pause_resume() {
  local asked held; asked=$(now)
  pgrc pause-replay lab c --timeout=2m || return 1
  wait_for 30 "c paused and out of -r" c_paused || return 1
  log "c's data is as of $(frozen_at)"
  held=$(psql_in c "select pg_last_wal_replay_lsn()")
  [ -n "$held" ] || { log "cannot read c's replay position"; return 1; }
  # unpaused, c would have applied the writers' WAL by now
  wait_for 30 "c received the writers' WAL past $held, its delay over" received_past "$held" "$asked" || return 1
  [ "$(psql_in c "select pg_last_wal_replay_lsn() = '$held'")" = t ] \
    || { log "c replayed past $held while paused"; return 1; }
  pgrc resume-replay lab c --timeout=2m || return 1
  wait_for 60 "c applies again and is back in -r" c_serving
}

# conf_times: per member, when PostgreSQL last read its configuration and when it started
conf_times() {
  local m
  for m in a b c; do
    echo "$m $(psql_in "$m" "select extract(epoch from pg_conf_load_time())::text || ' ' || extract(epoch from pg_postmaster_start_time())::text" 2>/dev/null)"
  done
}

reload_all() {
  local before after
  before=$(conf_times)
  KUBECONFIG=$WORK/admin.kubeconfig innet "$PGR_BIN" kubectl reload lab -n "$LAB_NS" --timeout-seconds 60 2>&1 | sed 's/^/       /'
  [ "${PIPESTATUS[0]}" = 0 ] || return 1
  after=$(conf_times)
  # every member read its configuration again, and none restarted
  paste -d' ' <(echo "$before") <(echo "$after") \
    | awk 'NF != 6 || $2 == $5 || $3 != $6 {bad=1; print "       not reloaded, or restarted: " $0} END {exit bad}'
}

day_two() {
  stage "day two under the writers: a restart-needing parameter, a new postgres image, an operator rollback and upgrade, a restart, a reload, a member added and removed, storage"
  DAY_TWO="| step | took | longest gap between acknowledged commits |"$'\n'"|---|---:|---:|"$'\n'
  local fn name what
  # function | step as printed | what the check says (read on fd 3: the steps use stdin)
  while IFS='|' read -r fn name what <&3; do
    day_two_step "$name" "$fn"
    check "$what" [ $? = 0 ]
  done 3<<EOS
restart_parameter|shared_buffers 128MB → 48MB (rolling restart)|a restart-needing parameter rolled out
new_image|postgres image retagged (pods replaced one at a time)|a new postgres image rolled out
operator_previous|operator rolled back to the previous release ${PREVIOUS_COMMIT:0:7}|the previous release's operator rolled its agents
operator_upgrade|operator upgraded from ${PREVIOUS_COMMIT:0:7} to this build|an operator upgrade from the previous release rolled the agents
restart_member|kubectl pgrc restart lab c|kubectl pgrc restart restarted c
reload_all|kubectl pgrc reload lab|kubectl pgrc reload: every member read its configuration, none restarted
pause_resume|kubectl pgrc pause-replay lab c, then resume-replay|kubectl pgrc pause-replay froze c (no replay past its pause, out of -r); resume-replay brought it back
member_added|member d added (clone from the primary)|a member added while running is cloned and streams
member_removed|member d removed|a member removed: pod deleted, slot dropped, volume kept
storage_refused|storage.size raised on volumes that cannot grow, then set back|a volume that cannot grow: VolumesMatchSpec says so, and clears
EOS
  printf '%s' "$DAY_TWO" | sed 's/^/       /'
}
