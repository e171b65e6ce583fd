# Trust on the pod network (ADR 0005), tried on the running lab: attacks on the agents from a pod
# and from the host side of the pod network, TLS on every replication connection, plain TCP refused,
# the application's Secret used from a client pod with verify-full against the CA Secret.

pod_ip() { k get pod "lab-$1" -o jsonpath='{.status.podIP}'; }

# run_pod NAME SPEC_JSON_OVERRIDES: a pod of the local postgres image that runs once; prints its log
run_pod() {
  local name=$1 overrides=$2
  k delete pod "$name" --ignore-not-found --wait=true >/dev/null 2>&1 || true
  k run "$name" --image="$POSTGRES_IMAGE" --image-pull-policy=Never --restart=Never \
    --overrides="$overrides" >/dev/null || return 1
  wait_for 60 "pod $name finished" bash -c "[[ \"\$(k get pod $name -o jsonpath='{.status.phase}')\" =~ ^(Succeeded|Failed)$ ]]" >&2 || true
  k logs "$name" 2>&1
  k delete pod "$name" --wait=false >/dev/null 2>&1 || true
}

# An HTTPS request without a client certificate, from a pod: the status line of the answer.
probe_overrides() { # probe_overrides IP METHOD PATH BODY
  local body; body=$(printf '%s' "$4" | sed 's/"/\\"/g')  # quotes escaped for the JSON string
  local req="$2 $3 HTTP/1.1\\r\\nHost: agent\\r\\nContent-Type: application/json\\r\\nContent-Length: ${#4}\\r\\nConnection: close\\r\\n\\r\\n$body"
  cat <<EOJ
{"apiVersion":"v1","spec":{"containers":[{"name":"probe","image":"$POSTGRES_IMAGE","imagePullPolicy":"Never",
 "command":["sh","-c","printf '$req' | openssl s_client -quiet -connect $1:8008 2>/dev/null | head -1"]}]}}
EOJ
}

trust_checks() {
  stage "trust: agents take commands from the operator only; TLS everywhere"
  local a b; a=$(pod_ip a); b=$(pod_ip b)
  local stopped='{"role":{"kind":"stopped"},"reason":"attack"}'
  local out
  out=$(run_pod attack-put-primary "$(probe_overrides "$a" PUT /desired "$stopped")")
  log "pod without credentials, PUT /desired (stopped) to the primary a: $out"
  check "a pod without credentials is refused by the primary's agent (401)" grep -q ' 401' <<<"$out"
  out=$(run_pod attack-put-standby "$(probe_overrides "$b" PUT /desired "$stopped")")
  log "pod without credentials, PUT /desired (stopped) to the sync standby b: $out"
  check "a pod without credentials is refused by the standby's agent (401)" grep -q ' 401' <<<"$out"
  out=$(run_pod attack-status "$(probe_overrides "$a" GET /status '')")
  check "a pod without credentials may not read /status (401)" grep -q ' 401' <<<"$out"
  out=$(innet curl -sk -o /dev/null -w '%{http_code}' -X PUT --data "$stopped" "https://$a:8008/desired" 2>&1 || true)
  log "host side of the pod network, PUT /desired without a certificate: $out"
  check "an unauthenticated PUT from outside the pods is refused (401)" [ "$out" = 401 ]
  out=$(innet curl -s -o /dev/null -w '%{http_code}' -X PUT --data "$stopped" "http://$a:8008/desired" 2>&1 || true)
  check "plain HTTP gets no HTTP answer from an agent" [ "$out" = 000 ]
  check "nothing changed: a is still the primary with b synchronous" \
    bash -c "[ \"\$(psql_in a \"select sync_state from pg_stat_replication where application_name='b'\")\" = sync ] && [ \"\$(jp '{.status.currentPrimary}')\" = a ]"

  psql_in a "select r.application_name, s.ssl, s.version from pg_stat_replication r join pg_stat_ssl s using (pid) order by 1" | sed 's/^/       pg_stat_ssl: /'
  check "pg_stat_ssl shows TLS for every replication connection" \
    bash -c "[ \"\$(psql_in a \"select (count(*) filter (where s.ssl))::text || '/' || count(*)::text from pg_stat_replication r join pg_stat_ssl s using (pid)\")\" = 2/2 ]"
  local repl; repl=$(k get secret lab-replication -o jsonpath='{.data.password}' | base64 -d)
  out=$(PGPASSWORD=$repl PGCONNECT_TIMEOUT=5 innet psql "host=$b user=replicator sslmode=disable replication=true dbname=postgres" -XAtc IDENTIFY_SYSTEM 2>&1 || true)
  log "plain-TCP replication attempt: $(head -1 <<<"$out")"
  check "a plain-TCP replication connection is refused (hostssl only)" grep -q 'no encryption' <<<"$out"

  local rwip; rwip=$(k get svc lab-rw -o jsonpath='{.spec.clusterIP}')
  k get secret lab-ca -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/lab-ca.crt"
  local supw; supw=$(k get secret lab-superuser -o jsonpath='{.data.password}' | base64 -d)
  out=$(PGPASSWORD=$supw innet psql "host=lab-rw.$LAB_NS.svc hostaddr=$rwip user=postgres dbname=postgres sslmode=verify-full sslrootcert=$WORK/lab-ca.crt" -XAtc 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' 2>&1 || true)
  check "psql with sslmode=verify-full and the CA Secret works through lab-rw" [ "$out" = t ]
  # the application's Secret, used as an application would: env from the Secret, CA mounted
  out=$(run_pod app-client "$(cat <<EOJ
{"apiVersion":"v1","spec":{"volumes":[{"name":"ca","secret":{"secretName":"lab-ca"}}],
 "containers":[{"name":"app","image":"$POSTGRES_IMAGE","imagePullPolicy":"Never",
  "env":[{"name":"URI","valueFrom":{"secretKeyRef":{"name":"lab-app","key":"uri"}}}],
  "volumeMounts":[{"name":"ca","mountPath":"/ca"}],
  "command":["sh","-c","psql \"\$URI?sslmode=verify-full&sslrootcert=/ca/ca.crt&hostaddr=$rwip\" -XAtc \"select current_user || ',' || current_database() || ',' || ssl from pg_stat_ssl where pid = pg_backend_pid()\""]}]}}
EOJ
)")
  log "client pod with the lab-app Secret: $out"
  check "the app Secret works from a client pod (user app, database app, TLS verified)" [ "$out" = "app,app,true" ]
  # a client outside the cluster, as docs/install-k3s.md shows: kubectl port-forward, TLS verified
  # against localhost (in every member's certificate)
  local pf_port=15439 pf
  nsenter --net="$NSPATH" "$BIN/kubectl" --kubeconfig "$WORK/admin.kubeconfig" port-forward svc/lab-rw "$pf_port:5432" \
    >"$WORK/logs/port-forward.log" 2>&1 &
  pf=$!
  wait_for 20 "kubectl port-forward svc/lab-rw listening" grep -q "Forwarding from" "$WORK/logs/port-forward.log" || true
  out=$(PGPASSWORD=$supw innet psql "host=localhost port=$pf_port user=postgres dbname=postgres sslmode=verify-full sslrootcert=$WORK/lab-ca.crt" -XAtc 'select pg_is_in_recovery()' 2>&1 || true)
  kill "$pf" 2>/dev/null || true
  wait "$pf" 2>/dev/null || true
  check "a client outside the cluster: kubectl port-forward svc/lab-rw, verify-full against localhost ($out)" [ "$out" = f ]
  check "a NetworkPolicy limits who reaches the members" \
    bash -c "[ \"\$(k get networkpolicy lab -o jsonpath='{.spec.ingress[0].ports[0].port}/{.spec.ingress[1].ports[0].port}')\" = 8008/5432 ]"
}

# Delete the cluster object and apply it again: the volumes and the Secrets that open them are kept,
# the new cluster starts on the old data and every acknowledged commit is still there.
recreate_checks() {
  stage "delete the cluster and create it again: data and credentials kept"
  local t0 before; t0=$(now)
  before=$(psql_in a "select count(*) from ledger")
  k delete pgrc lab --wait=true --timeout 120s >/dev/null || die "could not delete pgrc lab"
  wait_for 120 "member pods gone" bash -c "[ -z \"\$(k get pods -l pgreplica.io/cluster=lab -o name)\" ]" || die "pods left"
  check "Secrets kept with the volumes (Retain)" \
    k get secret lab-superuser lab-replication lab-app lab-ca-key lab-a-tls -o name
  apply_lab
  k wait pgrc/lab --for condition=Ready --timeout 240s >/dev/null || die "re-created lab not Ready in 240s"
  log "re-created lab Ready in $(since "$t0")s"; wide
  # The file applied again names neither day two's image nor its parameters: the members roll back
  # to them one at a time (a pod replaced, a server restarted) before the cluster is Healthy.
  wait_for 300 "every member pod back on $POSTGRES_IMAGE" all_pods "$POSTGRES_IMAGE" \
    || die "the re-created lab's pods did not return to $POSTGRES_IMAGE"
  wait_for 240 "re-created lab Healthy" bash -c "[ \"\$(k get pgrc lab -o jsonpath='{.status.phase}')\" = Healthy ]" \
    || die "the re-created lab did not become Healthy"
  wide
  local m missing
  for m in a b c; do
    wait_for 30 "ledger complete on $m" bash -c "[ \"\$(psql_in $m 'select count(*) from ledger')\" = $before ]" || true
    wait_for 60 "ledger of $m read" bash -c "psql_in $m \"select writer||','||seq from ledger\" >'$WORK/found-again-$m.raw'" \
      || die "cannot read the ledger on $m"
    sort "$WORK/found-again-$m.raw" >"$WORK/found-again-$m.csv"
    missing=$(comm -23 "$WORK/acked.csv" "$WORK/found-again-$m.csv" | wc -l)
    log "member $m after re-creation: $(wc -l <"$WORK/found-again-$m.csv") rows, $missing acknowledged commits missing"
    check "re-created cluster keeps every acknowledged commit on $m" [ "$missing" = 0 ]
  done
}
