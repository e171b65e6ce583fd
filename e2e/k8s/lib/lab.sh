# The lab scenario on the real node, driven through kubectl and the plugin.
# Writers run inside the test namespace (host side of the pod network) against the rw Service's
# ClusterIP with psql; every commit psql reports is an acknowledged commit in the ledger.

LAB_NS=default
CLIENT_TIMEOUTS=${CLIENT_TIMEOUTS:-connect_timeout=2}   # the multi-node tier adds TCP timeouts
PGDATA_OF() { echo "/var/lib/pgreplica/$1/data"; }
WRITERS=${WRITERS:-4}
FAILOVERS=${FAILOVERS:-3}

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
    if out=$(PGPASSWORD=$3 nsenter --net="$NSPATH" psql "host=$host user=postgres dbname=postgres $CLIENT_TIMEOUTS" -XAtq \
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
  check "the release file names the operator image once, and the operator has no second setting for it" bash -c \
    "[ \"\$(grep -c 'image: $OPERATOR_IMAGE\$' '$RELEASE_FILE')\" = 1 ] && ! k -n pgreplica-system get deploy/pgreplica-operator -o yaml | grep -q PGREPLICA_OPERATOR_IMAGE"
  check "member pods copy the agent from the image the operator read from its own pod ($OPERATOR_IMAGE)" bash -c \
    "[ \"\$(k get pod lab-a lab-b lab-c -o jsonpath='{.items[*].spec.initContainers[0].image}')\" = '$OPERATOR_IMAGE $OPERATOR_IMAGE $OPERATOR_IMAGE' ]"
  check "member pods run the CRD's default image $POSTGRES_IMAGE (bookworm, uid 999)" bash -c \
    "[ \"\$(k get pod lab-a -o jsonpath='{.spec.containers[0].image} {.spec.securityContext.runAsUser}')\" = '$POSTGRES_IMAGE 999' ]"

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

  stage "stage 2: $WRITERS writers through lab-rw; $FAILOVERS times: PGDATA of the primary deleted, failover, re-clone, failback"
  local rw pw; rw=$(k get svc lab-rw -o jsonpath='{.spec.clusterIP}')
  pw=$(k get secret lab-superuser -o jsonpath='{.data.password}' | base64 -d)
  log "lab-rw ClusterIP $rw"
  rm -f "$WORK/stop" "$WORK"/acked-* "$WORK"/failed-* "$WORK"/failover-* "$WORK/outages" "$WORK/failback-gaps"
  observe_timeline
  local i wpids=()
  for i in $(seq 1 "$WRITERS"); do writer "$i" "$rw" "$pw" & wpids+=($!); echo "$! writer-$i" >>"$WORK/pids"; done
  wait_for 20 "writers commit through lab-rw" bash -c "cat $WORK/acked-* 2>/dev/null | grep -q ." || die "no writes before the failure"
  local n
  for n in $(seq 1 "$FAILOVERS"); do one_failover "$n"; done
  # the failovers' breakdown before day two: it reads the operator's log, which an operator
  # upgrade replaces, and gaps between acknowledgements, which the rollouts add to
  stop_timeline
  failover_report "$(cat "$WORK"/acked-* | wc -l)"
  day_two
  touch "$WORK/stop"; wait "${wpids[@]}" 2>/dev/null || true
  log "after the last failback:"; wide
  local acked; acked=$(cat "$WORK"/acked-* | wc -l)
  ledger_checks lab 20
  check "acknowledged commits before and after the failures" [ "$acked" -gt 0 ]
  log "acknowledged commits through lab-rw over the failovers and day two: $acked"
}

# Background observers, each writing "<unix time> <what it saw>" when it changes: the cluster's
# status (a watch), the lab-rw EndpointSlice (a watch) and kube-proxy's DNAT rules for lab-rw.
observe_timeline() {
  # "<time> currentPrimary targetPrimary ready..." ("-" when unset); the API server ends a watch
  # after a while, so it is started again until the timelines stop
  ( while [ ! -e "$WORK/stop-timeline" ]; do
      k get pgrc lab -w -o json 2>/dev/null | jq -r --unbuffered \
        '[.status.currentPrimary // "-", .status.targetPrimary // "-", ((.status.members // [])[] | .ready // false | tostring)] | join(" ")' \
        | while read -r l; do echo "$(now) $l"; done
      sleep 0.5
    done >"$WORK/tl-status" ) &
  echo "$! timeline-status" >>"$WORK/pids"
  ( innet curl -sN --cacert "$WORK/pki/ca.crt" --cert "$WORK/pki/admin.crt" --key "$WORK/pki/admin.key" \
      "$APISERVER/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=1&labelSelector=kubernetes.io%2Fservice-name%3Dlab-rw" \
      | jq -r --unbuffered '[(.object.endpoints // [])[] | "\(.addresses[0])=\(.conditions.ready)"] | join(" ")' \
      | while read -r l; do echo "$(now) $l"; done >"$WORK/tl-slices" ) &
  echo "$! timeline-slices" >>"$WORK/pids"
  ( local last="" cur
    while [ ! -e "$WORK/stop-timeline" ]; do
      cur=$(innet iptables-save -t nat 2>/dev/null | awk '
        /^-A KUBE-SEP-/ && /DNAT/ { for (i = 1; i <= NF; i++) if ($i == "--to-destination") { split($(i + 1), a, ":"); ip[$2] = a[1] } }
        /^-A KUBE-SVC-/ && /default\/lab-rw/ { for (i = 1; i <= NF; i++) if ($i == "-j" && $(i + 1) ~ /^KUBE-SEP-/) used[$(i + 1)] = 1 }
        END { for (c in used) if (c in ip) print ip[c] }' | sort -u | tr '\n' ' ')
      [ "$cur" != "$last" ] && { echo "$(now) $cur" >>"$WORK/tl-iptables"; last=$cur; }
      sleep 0.05
    done ) &
  echo "$! timeline-iptables" >>"$WORK/pids"
}
stop_timeline() {
  touch "$WORK/stop-timeline"
  local pid name
  while read -r pid name; do case $name in timeline-*) kill_pid "$pid" ;; esac; done <"$WORK/pids"
}

# every acknowledged commit so far, writer,seq, sorted: the writers' (acked-ID) and the multi-node
# tier's long-lived clients' (direct-TAG.acked, writer id in direct-TAG.member)
ledger_csv() {
  { for f in "$WORK"/acked-*; do awk -v w="${f##*-}" '{print w","$1}' "$f"; done
    for f in "$WORK"/direct-*.acked; do [ -f "$f" ] || continue
      awk -v w="$(awk '{print $2}' "${f%.acked}.member")" '$1 ~ /^[0-9]+$/ {print w","$1}' "$f"; done
  } | sort
}

# ledger_checks LABEL SECONDS: every acknowledged commit is on every member (each waited for up to
# SECONDS: c applies WAL 3 s late)
ledger_checks() {
  ledger_csv >"$WORK/acked.csv"
  local m missing
  for m in a b c; do
    wait_for "$2" "member $m has every acknowledged commit" bash -c \
      "psql_in $m \"select writer||','||seq from ledger\" | sort | comm -23 $WORK/acked.csv - | (! grep -q .)" || true
    { psql_in "$m" "select writer||','||seq from ledger" || true; } | sort >"$WORK/found-$m.csv"
    missing=$(comm -23 "$WORK/acked.csv" "$WORK/found-$m.csv" | wc -l)
    log "member $m: $(wc -l <"$WORK/found-$m.csv") rows, $missing acknowledged commits missing"
    check "$1: zero lost acknowledged commits on $m ($(wc -l <"$WORK/acked.csv") acknowledged, $missing missing)" [ "$missing" = 0 ]
  done
}

# destroy_pgdata: delete a's data directory inside its pod and print the time taken right before
# the rm (pods share this machine's clock). postgres may create a WAL file while rm walks the tree
# ("Directory not empty"): delete until gone.
destroy_pgdata() {
  k exec lab-a -c postgres -- sh -c "date +%s.%N; for i in 1 2 3 4 5; do rm -rf $(PGDATA_OF a) 2>/dev/null; [ -e $(PGDATA_OF a)/PG_VERSION ] || exit 0; done; exit 1"
}
# wait_primary SECONDS MEMBER: the status names MEMBER the primary of record
wait_primary() {
  wait_for "$1" "currentPrimary = $2" bash -c "[ \"\$(jp '{.status.currentPrimary}')\" = $2 ]" || die "no failover to $2"
}

# first_after T FILE AWK-CONDITION: the time of the first line after T matching the condition ($2...)
first_after() { awk -v t="$1" "\$1>t && ($3) {print \$1; exit}" "$2"; }

one_failover() {
  local n=$1 ip_a ip_b t_fail
  ip_a=$(k get pod lab-a -o jsonpath='{.status.podIP}'); ip_b=$(k get pod lab-b -o jsonpath='{.status.podIP}')
  stage "failover $n of $FAILOVERS: rm -rf $(PGDATA_OF a) in lab-a (a=$ip_a, b=$ip_b)"
  sleep 2
  # the failure's time is taken inside the pod, right before rm (kubectl exec itself takes a
  # few hundred ms to start)
  t_fail=$(destroy_pgdata) || die "could not delete $(PGDATA_OF a)"
  t_fail=${t_fail%%$'\n'*}
  wait_primary 90 b
  log "during failover:"; wide
  wait_for 60 "writers commit again through lab-rw" bash -c "awk -v t=$t_fail '\$2>t{f=1} END{exit !f}' $WORK/acked-*" || die "no writes after failover"
  wait_for 240 "failback done: currentPrimary = a, Ready" bash -c "[ \"\$(jp '{.status.currentPrimary}')\" = a ] && k wait pgrc/lab --for condition=Ready --timeout 1s" || die "no failback"
  echo "$t_fail $ip_a $ip_b" >"$WORK/failover-$n"
}

# Per failover, from the timelines, the ledger and the operator's log: where the outage goes.
failover_report() {
  k logs lab-b -c postgres 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' >"$WORK/logs/lab-b.log" || true
  k logs lab-a -c postgres 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' >"$WORK/logs/lab-a.log" || true
  k logs -n pgreplica-system deploy/pgreplica-operator 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' >"$WORK/logs/operator-pod.log" || true
  cat "$WORK/logs/operator-pod.log" \
    | grep -E 'PrimaryLost|Promoted|FailbackStarted|moved the routing labels' \
    | while read -r ts rest; do echo "$(date -d "$ts" +%s.%N) $rest"; done >"$WORK/tl-operator" || true
  stage "lab timings ($FAILOVERS failovers; times after the failure: rm -rf of the primary's PGDATA)"
  printf '  %-3s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' "#" lost-log lost-stat promoted labels slice iptables 1st-ack outage restream failback fb-gap all-ready
  local n t a b seen lost prom lab sl ipt ack out res fb fbs fbgap all next
  for n in $(seq 1 "$FAILOVERS"); do
    read -r t a b <"$WORK/failover-$n"
    next=$( [ -f "$WORK/failover-$((n + 1))" ] && awk '{print $1}' "$WORK/failover-$((n + 1))" || echo 9999999999)
    seen=$(first_after "$t" "$WORK/tl-status" '$4=="false"')
    lost=$(first_after "$t" "$WORK/tl-operator" '/PrimaryLost/')
    prom=$(first_after "$t" "$WORK/tl-operator" '/reason="?Promoted/')
    lab=$(first_after "$t" "$WORK/tl-operator" '/moved the routing labels/ && /member=b/ && /role="?primary/')
    sl=$(first_after "$t" "$WORK/tl-slices" "index(\$0, \"$b=true\") && !index(\$0, \"$a=true\")")
    ipt=$(first_after "$t" "$WORK/tl-iptables" "\$2==\"$b\" && NF==2")
    ack=$(cat "$WORK"/acked-* | awk -v t="$t" '$2>t && (m=="" || $2<m){m=$2} END{print m}')
    res=$(first_after "${prom:-$t}" "$WORK/tl-status" '$2=="b" && $4=="true"')
    fb=$(first_after "${res:-$t}" "$WORK/tl-status" '$2=="a" && $3=="a" && $4=="true"')
    all=$(first_after "${fb:-$t}" "$WORK/tl-status" '$2=="a" && $3=="a" && $4=="true" && $5=="true" && $6=="true"')
    # the failover's outage is the longest gap that starts between 1 s before the failure and
    # the promotion; the failback's, the longest that starts between half a second before
    # FailbackStarted is logged (the handover is handed out in the tick before the line) and a
    # second after a is primary again
    fbs=$(first_after "${prom:-$t}" "$WORK/tl-operator" '/FailbackStarted/')
    fbs=${fbs:-${res:-$next}}
    out=$(longest_gap "$(awk -v t="$t" 'BEGIN{printf "%.9f", t-1}')" "${prom:-$fbs}")
    fbgap=$(longest_gap "$(awk -v f="$fbs" 'BEGIN{printf "%.9f", f-0.5}')" "$(awk -v f="${fb:-$next}" -v e="$next" 'BEGIN{x=f+1; printf "%.9f", (x<e ? x : e)}')")
    printf '  %-3s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' "$n" "$(rel "$t" "$lost")" "$(rel "$t" "$seen")" "$(rel "$t" "$prom")" "$(rel "$t" "$lab")" \
      "$(rel "$t" "$sl")" "$(rel "$t" "$ipt")" "$(rel "$t" "$ack")" "${out}s" "$(rel "$t" "$res")" "$(rel "${res:-$t}" "$fb")" "${fbgap}s" "$(rel "${res:-$t}" "$all")"
    echo "$out" >>"$WORK/outages"
    echo "$fbgap" >>"$WORK/failback-gaps"
  done
  log "acknowledged commits: $1 (writers: $WRITERS; failed attempts: $(cat "$WORK"/failed-* 2>/dev/null | wc -l))"
  log "write outage through lab-rw, median of $FAILOVERS: $(median "$WORK/outages")s"
  log "longest gap between acknowledged commits during the failbacks, median of $FAILOVERS: $(median "$WORK/failback-gaps")s"
  log "columns: lost-log = PrimaryLost logged by the operator; lost-stat = a not ready in status (a watch); promoted = Promoted (b runs as primary and holds the Lease);"
  log "  labels = b labelled primary; slice = lab-rw EndpointSlice has only b ready; iptables = kube-proxy DNATs lab-rw to b only;"
  log "  1st-ack = first commit acknowledged through lab-rw; outage = longest gap between acknowledgements that starts between 1 s before the failure and promoted;"
  log "  restream = a ready again as b's standby (status); failback = after restream, a primary and ready (status);"
  log "  fb-gap = longest gap between acknowledgements that starts between FailbackStarted (less 0.5 s) and 1 s after failback;"
  log "  all-ready = after restream, every member ready (c follows the new timeline only once its 3 s apply delay has passed)"
}
# longest_gap FROM UNTIL: the longest gap between acknowledged commits (any writer) that starts
# between FROM and UNTIL, in seconds
longest_gap() {
  cat "$WORK"/acked-* | awk '{print $2}' | sort -n \
    | awk -v f="$1" -v e="$2" 'NR>1 && p>=f && p<e && $1-p>m{m=$1-p} {p=$1} END{printf "%.2f", m}'
}
median() { sort -n "$1" | awk '{v[NR]=$1} END{printf "%.2f", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
rel() { [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN{printf "+%.2f", b-a}' || echo "-"; }
