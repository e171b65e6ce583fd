# API contract checks that only a real API server can make (issue #6, item 3), and the operator
# reconciling a cluster's objects as a process in the namespace (no node needed).

CHECKS_PASSED=0; CHECKS_FAILED=0
check() { # check DESCRIPTION CMD...
  local what=$1; shift
  if "$@" >"$WORK/check.out" 2>&1; then CHECKS_PASSED=$((CHECKS_PASSED + 1)); log "ok   $what"
  else CHECKS_FAILED=$((CHECKS_FAILED + 1)); log "FAIL $what"; sed 's/^/       /' "$WORK/check.out" | head -20; fi
}

install_manifests() {
  local t0; t0=$(now)
  if [ -n "${PGR_K8S_CRD:-}" ]; then
    # debugging aid: try a CRD fix before it lands (the manifests' own CRD is left out)
    log "PGR_K8S_CRD=$PGR_K8S_CRD replaces crds/pgreplicacluster.yaml"
    { awk 'BEGIN{RS="\n---\n"; ORS="\n---\n"} !/kind: CustomResourceDefinition/' "$RELEASE_FILE"; cat "$PGR_K8S_CRD"; } \
      | k apply --server-side -f - >"$WORK/logs/apply-manifests.log" 2>&1 || { cat "$WORK/logs/apply-manifests.log"; die "kubectl apply failed"; }
  else
    # the release file, as a user installs it
    k apply --server-side -f "$RELEASE_FILE" >"$WORK/logs/apply-manifests.log" 2>&1 \
      || { cat "$WORK/logs/apply-manifests.log"; die "kubectl apply --server-side -f $RELEASE_FILE failed"; }
  fi
  wait_for 30 "CRD established" k wait --for condition=Established crd/pgreplicaclusters.pgreplica.io --timeout 1s \
    || die "CRD not established"
  log "manifests applied in $(since "$t0")s"
}

invalid_rejected() { # FILE: rejected by the API server with the message of its `# expect:` line
  local f=$1 expect path msg out
  expect=$(sed -n 's/^# expect: //p' "$f" | head -1)
  path=${expect%%: *}; msg=${expect#*: }
  if out=$(k create --dry-run=server -f "$f" 2>&1); then echo "accepted: $out"; return 1; fi
  echo "$out"
  grep -qF -- "$msg" <<<"$out" || { echo "expected message not found: $msg"; return 1; }
  grep -qF -- "$path: Invalid value:" <<<"$out" || { echo "expected the error at path $path"; return 1; }
}

api_contract_checks() {
  stage "API contract: CRD, CEL, status subresource, printer columns, RBAC"
  check "CRD is structural and published in OpenAPI (kubectl explain)" \
    wait_for 30 "kubectl explain pgrc.spec.members.applyDelay" k explain pgrc.spec.members.applyDelay
  local f
  for f in "$REPO"/examples/*.yaml; do
    check "valid $(basename "$f") accepted (dry-run=server)" k create --dry-run=server -f "$f"
  done
  for f in "$REPO"/examples/invalid/*.yaml; do
    if grep -q '^# checked-by: rust' "$f"; then log "skip $(basename "$f") (checked-by: rust)"; continue; fi
    check "invalid $(basename "$f") rejected with its message" invalid_rejected "$f"
  done
  # status subresource: status only through /status, spec untouched by it, generation unchanged
  sed 's/^  name: .*/  name: contract/' "$REPO/examples/minimal.yaml" | k create -f - >/dev/null
  local gen; gen=$(k get pgrc contract -o jsonpath='{.metadata.generation}')
  check "status written through the status subresource" \
    k patch pgrc contract --subresource=status --type=merge -p '{"status":{"phase":"Degraded","currentPrimary":"a","readyMembers":"0/1","timeline":7}}'
  check "status visible, generation unchanged" bash -c "[ \"\$(k get pgrc contract -o jsonpath='{.status.phase}/{.metadata.generation}')\" = Degraded/$gen ]"
  k patch pgrc contract --type=merge -p '{"status":{"phase":"Healthy"}}' >/dev/null 2>&1 || true
  check "status ignored when written through the main resource" \
    bash -c "[ \"\$(k get pgrc contract -o jsonpath='{.status.phase}')\" = Degraded ]"
  k get pgrc contract >"$WORK/get.txt"; k get pgrc contract -o wide >"$WORK/getwide.txt"
  sed 's/^/       /' "$WORK/getwide.txt"
  check "printer columns (NAME PRIMARY READY PHASE AGE)" grep -Eq '^NAME +PRIMARY +READY +PHASE +AGE' "$WORK/get.txt"
  check "printer columns -o wide (TOPOLOGY, TIMELINE) and values" \
    bash -c "grep -Eq '^NAME +PRIMARY +READY +PHASE +TOPOLOGY +TIMELINE +AGE' $WORK/getwide.txt && grep -Eq '^contract +a +0/1 +Degraded +[^ ]* *7 ' $WORK/getwide.txt"
  k delete pgrc contract --wait=true >/dev/null

  local sa=system:serviceaccount:pgreplica-system:pgreplica-operator
  can() { [ "$(k auth can-i --as "$sa" "$@" 2>/dev/null)" = yes ]; }
  cannot() { ! can "$@"; }
  check "operator SA may create pods in default" can create pods -n default
  check "operator SA may patch pgreplicaclusters/status" can patch pgreplicaclusters.pgreplica.io --subresource=status -n default
  check "operator SA may update leases" can update leases.coordination.k8s.io -n default
  check "operator SA may create events" can create events.events.k8s.io -n default
  check "operator SA may patch secrets (certificate renewal)" can patch secrets -n default
  check "operator SA may create networkpolicies" can create networkpolicies.networking.k8s.io -n default
  check "operator SA may NOT list secrets" cannot list secrets -n default
  check "operator SA may NOT create pods/exec" cannot create pods --subresource=exec -n default
  check "operator SA may NOT delete nodes" cannot delete nodes
  check "operator SA may NOT delete services" cannot delete services -n default
  check "operator SA may NOT delete the CRD" cannot delete customresourcedefinitions.apiextensions.k8s.io
  check "operator SA may NOT update pgreplicaclusters spec" cannot update pgreplicaclusters.pgreplica.io -n default
}

operator_token_kubeconfig() { # a kubeconfig with a token of the operator's ServiceAccount
  local token; token=$(k create token pgreplica-operator -n pgreplica-system --duration 2h)
  cat >"$WORK/operator.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- cluster: {certificate-authority: $WORK/pki/ca.crt, server: $APISERVER}
  name: e2e
users:
- name: operator
  user: {token: $token}
contexts:
- context: {cluster: e2e, user: operator, namespace: pgreplica-system}
  name: e2e
current-context: e2e
EOK
}

owned_by() { # KIND NAME CLUSTER: the object has a controller owner reference to the cluster
  [ "$(k get "$1" "$2" -o jsonpath='{.metadata.ownerReferences[?(@.controller==true)].kind}/{.metadata.ownerReferences[?(@.controller==true)].name}')" = "PgReplicaCluster/$3" ]
}
none_left() { # no object labelled with the cluster is left (PVCs aside); fails if kubectl fails
  local out; out=$(k get pods,svc,pdb,networkpolicies,serviceaccounts,roles,rolebindings,leases -l "pgreplica.io/cluster=$1" -o name) || return 1
  [ -z "$out" ] || { echo "left: $out"; return 1; }
}

operator_process_checks() {
  stage "operator as a process with its ServiceAccount token: objects for examples/lab.yaml, GC"
  operator_token_kubeconfig
  spawn operator-process env KUBECONFIG="$WORK/operator.kubeconfig" PGREPLICA_LOG=info \
    "$PGR_BIN" operator --http 127.0.0.1:18080 --image "$OPERATOR_IMAGE"
  local t0; t0=$(now)
  k apply -f "$REPO/examples/lab.yaml" >/dev/null
  local objs="pod/lab-a pod/lab-b pod/lab-c pvc/lab-a pvc/lab-b pvc/lab-c service/lab-rw service/lab-ro service/lab-r networkpolicy/lab"
  wait_for 60 "operator created pods, PVCs and Services of lab" k get $objs || true
  k get pods,pvc,svc,secrets,serviceaccounts,roles,rolebindings,pdb,leases -l pgreplica.io/cluster=lab -o name 2>&1 | sed 's/^/       /'
  local o
  for o in $objs; do
    case $o in
      pvc/*) check "$o created, not owned (volumeReclaim defaults to Retain: data outlives the cluster)" \
               bash -c "[ -z \"\$(k get $o -o jsonpath='{.metadata.ownerReferences}')\" ]" ;;
      *) check "$o created and owned by the cluster" owned_by "${o%%/*}" "${o#*/}" lab ;;
    esac
  done
  check "rw Service selects the primary role" bash -c "k get svc lab-rw -o jsonpath='{.spec.selector}' | grep -q primary"
  check "member pods ask for the node of their member (nodeSelector laptop/rpi1/rpi2)" \
    bash -c "[ \"\$(k get pod lab-a lab-b lab-c -o jsonpath='{.items[*].spec.nodeSelector.kubernetes\.io/hostname}')\" = 'laptop rpi1 rpi2' ]"
  check "member pods use the operator image for the agent binary" \
    bash -c "k get pod lab-a -o jsonpath='{.spec.initContainers[0].image}' | grep -qx '$OPERATOR_IMAGE'"
  check "password Secrets generated" k get secret -l pgreplica.io/cluster=lab -o name
  wait_for 30 "status reported by the operator" bash -c "[ -n \"\$(k get pgrc lab -o jsonpath='{.status.phase}')\" ]" || true
  k get pgrc lab -o wide | sed 's/^/       /'
  check "status.observedGeneration set by the operator" bash -c "[ -n \"\$(k get pgrc lab -o jsonpath='{.status.observedGeneration}')\" ]"
  k get events --field-selector involvedObject.kind=PgReplicaCluster -o custom-columns=REASON:.reason,MESSAGE:.message 2>&1 | head -8 | sed 's/^/       /'
  log "operator reconciled lab in $(since "$t0")s"
  t0=$(now)
  k delete pgrc lab --wait=true --timeout 60s >/dev/null
  wait_for 60 "deleting the cluster garbage-collected its objects" none_left lab || true
  check "garbage collection of pods, Services, PDBs, NetworkPolicy, ServiceAccount, Role, RoleBinding" none_left lab
  check "PVCs kept after the cluster is deleted (Retain)" bash -c "[ \"\$(k get pvc -l pgreplica.io/cluster=lab -o name | wc -l)\" = 3 ]"
  check "Secrets that open the kept volumes kept too (passwords, CA, member certificates)" \
    k get secret lab-superuser lab-replication lab-app lab-ca-key lab-ca lab-a-tls lab-b-tls lab-c-tls -o name
  k delete pvc -l pgreplica.io/cluster=lab --wait=true --timeout 60s >/dev/null
  k delete secret -l pgreplica.io/cluster=lab --wait=true --timeout 60s >/dev/null
  # stop the process-operator before the in-cluster one can start
  local pid; pid=$(awk '$2=="operator-process"{print $1}' "$WORK/pids")
  kill_pid "$pid"
  log "operator process stopped"
}
