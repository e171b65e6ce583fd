# The network namespace, certificates, etcd, kube-apiserver, controller-manager and scheduler.

make_netns() {
  ip netns add "$NS"
  innet ip link set lo up
  # the node's address lives on the namespace's loopback: no default route, no link to the host
  innet ip addr add "$NODE_IP/32" dev lo
  # clients in this namespace (the lab's writers) reach Service ClusterIPs: a route for the service
  # range lets the connect pass route lookup; kube-proxy's OUTPUT DNAT then re-routes to the pod
  innet ip route add "$SVC_CIDR" dev lo
  log "network namespace $NS: $(innet ip -o -4 addr | awk '{print $2"="$4}' | tr '\n' ' ')routes: $(innet ip route | tr '\n' ';')"
}

cert() { # cert NAME CN O [SAN]: a key and a certificate signed by our CA
  local name=$1 cn=$2 o=$3 san=${4:-}
  local d=$WORK/pki
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null
  openssl req -new -key "$d/$name.key" -subj "/CN=$cn${o:+/O=$o}" -out "$d/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
}

make_pki() {
  local d=$WORK/pki; mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 \
    -subj "/CN=pgreplica-e2e-ca" 2>/dev/null
  cert apiserver kube-apiserver "" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert admin admin system:masters
  cert kubelet "system:node:$NODE" system:nodes "IP:$NODE_IP,DNS:$NODE"
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  kubeconfig "$WORK/admin.kubeconfig" admin
  kubeconfig "$WORK/kubelet.kubeconfig" kubelet
}

kubeconfig() { # kubeconfig FILE CERTNAME
  cat >"$1" <<EOK
apiVersion: v1
kind: Config
clusters:
- cluster: {certificate-authority: $WORK/pki/ca.crt, server: $APISERVER}
  name: e2e
users:
- name: $2
  user: {client-certificate: $WORK/pki/$2.crt, client-key: $WORK/pki/$2.key}
contexts:
- context: {cluster: e2e, user: $2, namespace: default}
  name: e2e
current-context: e2e
EOK
}

start_control_plane() {
  local t0; t0=$(now)
  mkdir -p "$WORK/etcd"
  spawn etcd "$BIN/etcd" --data-dir "$WORK/etcd" --name e2e \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster e2e=http://127.0.0.1:2380 --unsafe-no-fsync --log-level warn
  local p=$WORK/pki
  spawn kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --secure-port 6443 --bind-address 0.0.0.0 --advertise-address "$NODE_IP" \
    --service-cluster-ip-range "$SVC_CIDR" \
    --authorization-mode Node,RBAC \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false --enable-priority-and-fairness=false
  wait_for 90 "kube-apiserver /readyz ok" k get --raw /readyz || die "kube-apiserver not ready"
  spawn kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$WORK/admin.kubeconfig" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=false --bind-address 127.0.0.1 --profiling=false
  spawn kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$WORK/admin.kubeconfig" --leader-elect=false --bind-address 127.0.0.1 --profiling=false
  wait_for 60 "default ServiceAccount created (controller-manager works)" k get serviceaccount default -n default \
    || die "controller-manager did not create the default ServiceAccount"
  log "control plane up in $(since "$t0")s: $(k version -o json | awk -F'"' '/gitVersion/{print $4}' | tr '\n' ' ')"
}
