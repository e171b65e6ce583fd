# The lab scenario on the real node, driven through kubectl and the plugin.
# Writers run inside the test namespace (host side of the pod network) against the rw Service's
# ClusterIP with psql; every commit psql reports is an acknowledged commit in the ledger.

LAB_NS=default
PGDATA_OF() { echo "/var/lib/pgreplica/$1/data"; }
WRITERS=${WRITERS:-4}

psql_in() { # psql_in MEMBER SQL: as the superuser inside the member's pod
  k exec "lab-$1" -c postgres -- sh -c "PGPASSWORD=\$(cat /etc/pgreplica/superuser/password) psql -h 127.0.0.1 -U postgres -d postgres -XAtq -c \"$2\""
}
wide() { k get pgrc lab -o wide | sed 's/^/       /'; }
jp() { k get pgrc lab -o jsonpath="$1" 2>/dev/null; }
member_ready() { [ "$(jp "{.status.members[?(@.name==\"$1\")].ready}")" = true ]; }
streaming_to() { # streaming_to PRIMARY STANDBY: STANDBY streams from PRIMARY
  [ "$(psql_in "$1" "select count(*) from pg_stat_replication where application_name='$2' and state='streaming'" 2>/dev/null)" = 1 ]
}
export -f psql_in jp member_ready streaming_to 2>/dev/null || true

apply_lab() {
  "$BIN/kubectl" kustomize --load-restrictor LoadRestrictionsNone "$REPO/e2e/k8s/overlay/lab" >"$WORK/lab.yaml"
  k apply -f "$WORK/lab.yaml" >/dev/null
}

writer() { # writer ID RW_HOST PASSWORD: insert rows until $WORK/stop exists; log acknowledged ones
  local id=$1 host=$2 n=0 out
  while [ ! -e "$WORK/stop" ]; do
    n=$((n + 1))
    if out=$(PGPASSWORD=$3 PGCONNECT_TIMEOUT=2 nsenter --net="$NSPATH" psql -h "$host" -U postgres -d postgres -XAtq \
        -c "insert into ledger(writer, seq) values ($id, $n) returning seq" 2>>"$WORK/writer-$id.err"); then
      [ "$out" = "$n" ] && echo "$n $(date +%s.%N)" >>"$WORK/acked-$id"
    else
      echo "$(date +%s.%N)" >>"$WORK/failed-$id"; sleep 0.1
    fi
  done
}

lab_scenario() {
  stage "lab: apply (nodeSelector -> $NODE, image $POSTGRES_IMAGE) and wait Ready"
  local t0; t0=$(now)
  apply_lab
  k wait pgrc/lab --for condition=Ready --timeout 240s >/dev/null || die "lab not Ready in 240s"
  log "lab Ready in $(since "$t0")s"
  wide
  KUBECONFIG=$WORK/admin.kubeconfig innet "$PGR_BIN" kubectl status lab -n "$LAB_NS" 2>&1 | sed 's/^/       /' || true
  [ "$(jp '{.status.currentPrimary}')" = a ] || die "primary is not a"

  stage "stage 1: configuration (sync b, async c with apply delay)"
  psql_in a "select application_name, sync_state, state from pg_stat_replication order by 1" | sed 's/^/       pg_stat_replication: /'
  check "b is sync on a" bash -c "[ \"\$(psql_in a \"select sync_state from pg_stat_replication where application_name='b'\")\" = sync ] || [ \"\$(psql_in a \"select sync_state from pg_stat_replication where application_name='b'\")\" = quorum ]"
  check "c is async on a" bash -c "[ \"\$(psql_in a \"select sync_state from pg_stat_replication where application_name='c'\")\" = async ]"
  check "c has recovery_min_apply_delay 3s" bash -c "[ \"\$(psql_in c 'show recovery_min_apply_delay')\" = 3s ]"
  psql_in a "create table if not exists ledger(writer int, seq int, at timestamptz default now(), primary key (writer, seq)); create table if not exists probe(v text)" >/dev/null
  wait_for 20 "tables replayed on c" bash -c "[ \"\$(psql_in c \"select count(*) from pg_class where relname='probe'\")\" = 1 ]" || die "table not on c"
  local tw; psql_in a "insert into probe values ('p1')" >/dev/null; tw=$(now)
  local on_b on_c_now
  on_b=$(psql_in b "select count(*) from probe where v='p1'" || echo error)
  on_c_now=$(psql_in c "select count(*) from probe where v='p1'" || echo error)
  wait_for 20 "probe row visible on c" bash -c "[ \"\$(psql_in c \"select count(*) from probe where v='p1'\")\" = 1 ]" || true
  local delay; delay=$(since "$tw")
  log "row on b at once: $on_b; on c right after commit: $on_c_now; on c after ${delay}s"
  check "row visible on b at once" [ "$on_b" = 1 ]
  check "row absent on c right after commit, present after about 3 s" \
    awk -v n="$on_c_now" -v d="$delay" 'BEGIN{exit !(n==0 && d>=2.5 && d<10)}'
  trust_checks

  stage "stage 2: $WRITERS writers through lab-rw, PGDATA of the primary deleted"
  local rw pw; rw=$(k get svc lab-rw -o jsonpath='{.spec.clusterIP}')
  pw=$(k get secret lab-superuser -o jsonpath='{.data.password}' | base64 -d)
  log "lab-rw ClusterIP $rw"
  rm -f "$WORK/stop" "$WORK"/acked-* "$WORK"/failed-*
  local i wpids=()
  for i in $(seq 1 "$WRITERS"); do writer "$i" "$rw" "$pw" & wpids+=($!); echo "$! writer-$i" >>"$WORK/pids"; done
  sleep 5
  log "acknowledged before the failure: $(cat "$WORK"/acked-* 2>/dev/null | wc -l)"
  local t_fail; t_fail=$(now)
  # postgres may create a WAL file while rm walks the tree ("Directory not empty"): delete until gone
  k exec lab-a -c postgres -- sh -c "for i in 1 2 3 4 5; do rm -rf $(PGDATA_OF a) 2>/dev/null; [ -e $(PGDATA_OF a)/PG_VERSION ] || exit 0; done; exit 1" \
    || die "could not delete $(PGDATA_OF a)"
  log "failure injected: rm -rf $(PGDATA_OF a) in lab-a"
  wait_for 60 "primary loss seen in status (a not ready)" bash -c '! member_ready a' || true
  local t_lost; t_lost=$(now)
  wait_for 90 "currentPrimary = b" bash -c "[ \"\$(jp '{.status.currentPrimary}')\" = b ]" || die "no failover to b"
  local t_promoted; t_promoted=$(now)
  log "during failover:"; wide
  k get events --field-selector involvedObject.name=lab --sort-by=.lastTimestamp -o custom-columns=REASON:.reason,MESSAGE:.message 2>/dev/null | tail -8 | sed 's/^/       /'
  wait_for 60 "writers commit again through lab-rw" bash -c "awk -v t=$t_fail '\$2>t{f=1} END{exit !f}' $WORK/acked-*" || die "no writes after failover"
  local t_writable; t_writable=$(cat "$WORK"/acked-* | awk -v t="$t_fail" '$2>t{print $2}' | sort -n | head -1)
  local t_lastok; t_lastok=$(cat "$WORK"/acked-* | awk -v t="$t_fail" '$2<=t{print $2}' | sort -n | tail -1)

  stage "stage 3: recovery (re-clone of a, failback)"
  # a may be re-cloned and failback may be under way before this line runs: either ends the wait
  wait_for 180 "a streams again from b (or is already back as primary)" \
    bash -c "streaming_to b a || [ \"\$(jp '{.status.currentPrimary}')\" = a ]" || true
  local t_restream; t_restream=$(now)
  wait_for 240 "failback done: currentPrimary = a, Ready" bash -c "[ \"\$(jp '{.status.currentPrimary}')\" = a ] && k wait pgrc/lab --for condition=Ready --timeout 1s" || die "no failback"
  local t_failback; t_failback=$(now)
  sleep 3
  touch "$WORK/stop"; wait "${wpids[@]}" 2>/dev/null || true
  log "after failback:"; wide
  local acked; acked=$(cat "$WORK"/acked-* | wc -l)
  cat "$WORK"/acked-* >/dev/null
  for i in $(seq 1 "$WRITERS"); do awk -v w="$i" '{print w","$1}' "$WORK/acked-$i"; done | sort >"$WORK/acked.csv"
  sleep 4  # c applies 3 s late
  local m missing
  for m in a b c; do
    psql_in "$m" "select writer||','||seq from ledger" | sort >"$WORK/found-$m.csv"
    missing=$(comm -23 "$WORK/acked.csv" "$WORK/found-$m.csv" | wc -l)
    log "member $m: $(wc -l <"$WORK/found-$m.csv") rows, $missing acknowledged commits missing"
    check "zero lost acknowledged commits on $m" [ "$missing" = 0 ]
  done
  check "acknowledged commits before and after the failure" [ "$acked" -gt 0 ]
  stage "lab timings"
  printf '  %-36s %s\n' \
    "acknowledged commits" "$acked (writers: $WRITERS; failed attempts: $(cat "$WORK"/failed-* 2>/dev/null | wc -l))" \
    "primary lost detected (status)" "+$(awk -v a="$t_fail" -v b="$t_lost" 'BEGIN{printf "%.2f", b-a}')s" \
    "new primary b in status" "+$(awk -v a="$t_fail" -v b="$t_promoted" 'BEGIN{printf "%.2f", b-a}')s" \
    "last ack before b was seen as primary" "+$(cat "$WORK"/acked-* | awk '{print $2}' | sort -n | awk -v a="$t_fail" -v b="$t_promoted" '$1<b{l=$1} END{printf "%.2f", l-a}')s" \
    "write outage (longest gap between acks)" "$(cat "$WORK"/acked-* | awk '{print $2}' | sort -n | awk -v t="$t_fail" 'NR>1 && $1>t-1 && $1-p>m{m=$1-p} {p=$1} END{printf "%.2f", m}')s" \
    "old primary a streaming again" "+$(awk -v a="$t_fail" -v b="$t_restream" 'BEGIN{printf "%.2f", b-a}')s" \
    "failback done (a primary, Ready)" "+$(awk -v a="$t_fail" -v b="$t_failback" 'BEGIN{printf "%.2f", b-a}')s"
}
