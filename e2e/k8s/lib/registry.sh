# docs/install-k3s.md's registry path: a registry on the node's address (Debian's docker-registry,
# the CNCF distribution server), the release's image archive pushed with the skopeo command of the
# doc, and the node's containerd told that the registry speaks plain HTTP (what k3s writes from a
# registries.yaml mirror with an http endpoint). A pod then pulls the operator image from it.

REGISTRY=$NODE_IP:5000
REGISTRY_BIN=$CACHE_ROOT/docker-registry/usr/bin/docker-registry

# the server's binary only, unpacked from Debian's package: installing the package would start a
# registry service on the host
ensure_registry_bin() {
  [ -x "$REGISTRY_BIN" ] && return 0
  local d; d=$(mktemp -d "$WORK/registry-deb.XXXX")
  (cd "$d" && { apt-get download docker-registry >/dev/null 2>&1 || { apt-get update -qq && apt-get download docker-registry >/dev/null; }; }) \
    || die "apt-get download docker-registry failed"
  dpkg-deb -x "$d"/docker-registry_*.deb "$CACHE_ROOT/docker-registry" && rm -rf "$d"
  [ -x "$REGISTRY_BIN" ] || die "no docker-registry binary in the package"
}

# containerd's registry configuration, written before containerd starts
registry_hosts_config() {
  local d=$ND/containerd/certs.d/$REGISTRY
  mkdir -p "$d"
  printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$REGISTRY" "$REGISTRY" >"$d/hosts.toml"
}

registry_checks() {
  stage "the registry path of docs/install-k3s.md: skopeo copy --all to a registry, a pod pulls from it"
  cat >"$WORK/registry.yml" <<EOC
version: 0.1
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REGISTRY}
EOC
  ensure_registry_bin
  spawn registry "$REGISTRY_BIN" serve "$WORK/registry.yml"
  wait_for 30 "registry answers on $REGISTRY" innet curl -sf "http://$REGISTRY/v2/" || { tail -5 "$WORK/logs/registry.log"; return 1; }
  local ref=$REGISTRY/pgreplica:$RELEASE_VERSION t0; t0=$(now)
  check "skopeo copy --all of dist/$(basename "$OPERATOR_ARCHIVE") to the registry, as the doc writes it" \
    innet skopeo copy --all --dest-tls-verify=false "oci-archive:$OPERATOR_ARCHIVE" "docker://$ref"
  log "pushed in $(since "$t0")s"
  check "the registry holds the image index with linux/amd64 and linux/arm64" bash -c \
    "innet skopeo inspect --raw --tls-verify=false docker://$ref | jq -r '[.manifests[].platform.architecture] | sort | join(\" \")' | grep -qx 'amd64 arm64'"
  k run registry-pull --image="$ref" --image-pull-policy=Always --restart=Never --command -- /pgreplica --version >/dev/null
  wait_for 60 "a pod pulled $ref from the registry and ran it" \
    bash -c "[ \"\$(k get pod registry-pull -o jsonpath='{.status.phase}')\" = Succeeded ]" || k describe pod registry-pull | tail -8
  check "the pulled image runs: pgreplica --version prints $RELEASE_VERSION" \
    bash -c "k logs registry-pull | grep -qx 'pgreplica $RELEASE_VERSION'"
  k delete pod registry-pull --wait=false >/dev/null 2>&1 || true
}
