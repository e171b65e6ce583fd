# The operator image: the binary and the glibc libraries it links (from the toolchain's bookworm,
# for each architecture), a non-root user, nothing else. Member pods copy the same binary out of it.

# arch_triplet ARCH
arch_triplet() { case $1 in amd64) echo x86_64-linux-gnu ;; arm64) echo aarch64-linux-gnu ;; esac; }

# elf_field BINARY interp|needed
elf_field() {
  case $2 in
    interp) readelf_of "$1" -l | sed -n 's/.*program interpreter: \(.*\)\]/\1/p' ;;
    needed) readelf_of "$1" -d | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' ;;
  esac
}

# in_toolchain_path PATH: PATH with every link resolved inside the toolchain root
in_toolchain_path() {
  local p; p=$(chroot "$TOOLCHAIN" readlink -e "$1") || fail "$1 is not in the toolchain"
  echo "$p"
}

# operator_rootfs ARCH BINARY DIR
operator_rootfs() {
  local arch=$1 bin=$2 dir=$3 triplet lib todo interp
  triplet=$(arch_triplet "$arch")
  mkdir -p "$dir/etc" "$dir/tmp" "$dir/lib/$triplet"
  install -m 0755 "$bin" "$dir/pgreplica"
  interp=$(elf_field "$bin" interp)
  [ -n "$interp" ] || fail "$bin has no program interpreter"
  mkdir -p "$dir$(dirname "$interp")"
  # links in the toolchain are absolute (/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...):
  # resolve them inside it, or the host's own files would be copied
  cp "$TOOLCHAIN$(in_toolchain_path "$interp")" "$dir$interp"
  todo=$(elf_field "$bin" needed)
  while [ -n "$todo" ]; do
    lib=${todo%%$'\n'*}; todo=${todo#"$lib"}; todo=${todo#$'\n'}
    [ -e "$dir/lib/$triplet/$lib" ] || [ "$lib" = "${interp##*/}" ] && continue
    [ -e "$TOOLCHAIN/usr/lib/$triplet/$lib" ] || fail "library $lib ($arch) is not in the toolchain"
    cp "$TOOLCHAIN$(in_toolchain_path "/usr/lib/$triplet/$lib")" "$dir/lib/$triplet/$lib"
    todo=$(printf '%s\n%s' "$todo" "$(elf_field "$dir/lib/$triplet/$lib" needed)" | sed '/^$/d')
  done
  echo 'nonroot:x:65532:65532::/home/nonroot:/sbin/nologin' >"$dir/etc/passwd"
  echo 'nonroot:x:65532:' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
}

build_image() {
  local t0 work arch; t0=$(date +%s)
  work=$(mktemp -d "$REL_CACHE/image.XXXX")
  trap 'rm -rf "$work"' EXIT
  for arch in amd64 arm64; do operator_rootfs "$arch" "$DIST/pgreplica-linux-$arch" "$work/$arch"; done
  local cfg digest
  cfg=$(printf '{"Entrypoint":["/pgreplica"],"Cmd":["operator"],"User":"65532:65532","Labels":{"org.opencontainers.image.title":"pgreplica","org.opencontainers.image.version":"%s"}}' "$VERSION")
  digest=$(TMPDIR=$work oci_archive "$IMAGE" "$DIST/pgreplica-$VERSION-image.tar" "$cfg" "amd64=$work/amd64" "arm64=$work/arm64") \
    || fail "writing the image archive failed"
  rm -rf "$work"; trap - EXIT
  say "image: $IMAGE ($digest, linux/amd64 + linux/arm64) $(du -h "$DIST/pgreplica-$VERSION-image.tar" | cut -f1) in $(( $(date +%s) - t0 ))s"
}

# The release file: manifests/ (CRD, namespace, RBAC, operator) rendered by kustomize with the
# image set, which then appears once.
build_release_yaml() {
  local k out=$DIST/pgreplica-$VERSION.yaml
  k=$(mktemp -d "$REPO/.release-kustomize.XXXX")
  cat >"$k/kustomization.yaml" <<EOK
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../manifests]
patches:
  - target: {kind: Deployment, name: pgreplica-operator}
    patch: |-
      - {op: test, path: /spec/template/spec/containers/0/name, value: operator}
      - {op: replace, path: /spec/template/spec/containers/0/image, value: "$IMAGE"}
EOK
  { printf '# pgreplica %s: the CRD, the pgreplica-system namespace, least-privilege RBAC and the operator.\n' "$VERSION"
    printf '# Install or upgrade: kubectl apply --server-side -f pgreplica-%s.yaml\n' "$VERSION"
    printf '# The operator image is named once below; member pods copy the agent from the same image.\n'
    render_kustomize "$k"; } >"$out.tmp" || { rm -rf "$k"; fail "rendering manifests/ failed"; }
  rm -rf "$k"
  local n; n=$(grep -c "image: $IMAGE\$" "$out.tmp" || true)
  [ "$n" = 1 ] || fail "the release file names the image $n times, not once"
  mv "$out.tmp" "$out"
  say "release file: $out ($(grep -c '^kind:' "$out") objects)"
}

render_kustomize() {
  if command -v kubectl >/dev/null; then kubectl kustomize "$1"
  elif command -v kustomize >/dev/null; then kustomize build "$1"
  else fail "release/build.sh renders manifests/ with kubectl (or kustomize): install either (as root: apt-get install kubernetes-client, or go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0)"
  fi
}
