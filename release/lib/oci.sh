# OCI image archives written with tar, gzip and sha256sum: no daemon, no registry. Reproducible:
# file order, owners and times are fixed (SOURCE_DATE_EPOCH), gzip stores no name or time, and the
# JSON is written byte for byte here. Sourced by release/build.sh and the Kubernetes e2e.

oci_sha() { sha256sum "$1" | cut -d' ' -f1; }
oci_size() { stat -c %s "$1"; }

# oci_blob LAYOUT FILE: move FILE into LAYOUT/blobs/sha256, print "DIGEST SIZE".
oci_blob() {
  local d s; d=$(oci_sha "$2") && s=$(oci_size "$2") && [ -n "$d" ] || return 1
  mv "$2" "$1/blobs/sha256/$d" || return 1
  echo "$d $s"
}

# oci_manifest LAYOUT ARCH ROOTFS CONFIG_FRAGMENT: one single-layer image; prints "DIGEST SIZE".
oci_manifest() {
  local lay=$1 arch=$2 root=$3 cfg=$4 epoch=${SOURCE_DATE_EPOCH:-0} tmp
  tmp=$(mktemp -d "$lay/tmp.XXXX")
  tar -C "$root" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -cf "$tmp/layer.tar" . || return 1
  local diff; diff=$(oci_sha "$tmp/layer.tar") || return 1
  gzip -6 -n "$tmp/layer.tar" || return 1
  local layer; layer=$(oci_blob "$lay" "$tmp/layer.tar.gz") || return 1
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$cfg" "$diff" >"$tmp/config.json"
  local config; config=$(oci_blob "$lay" "$tmp/config.json") || return 1
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "${config% *}" "${config#* }" "${layer% *}" "${layer#* }" >"$tmp/manifest.json"
  oci_blob "$lay" "$tmp/manifest.json"
  rmdir "$tmp"
}

# oci_archive NAME OUT CONFIG_FRAGMENT ARCH=ROOTFS...: an OCI layout tar for `ctr images import`
# (and skopeo/podman): one image NAME; with several architectures NAME is an image index.
oci_archive() {
  local name=$1 out=$2 cfg=$3; shift 3
  local lay; lay=$(mktemp -d "${TMPDIR:-/tmp}/oci.XXXX")
  mkdir -p "$lay/blobs/sha256"
  local entries=() pair m top media
  for pair in "$@"; do
    m=$(oci_manifest "$lay" "${pair%%=*}" "${pair#*=}" "$cfg") || { rm -rf "$lay"; return 1; }
    entries+=("$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"}}' \
      "${m% *}" "${m#* }" "${pair%%=*}")")
  done
  local platform=""
  if [ $# -eq 1 ]; then
    top=$m media=application/vnd.oci.image.manifest.v1+json
    platform=$(printf ',"platform":{"architecture":"%s","os":"linux"}' "${1%%=*}")
  else
    (IFS=,; printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "${entries[*]}") >"$lay/index-img.json"
    top=$(oci_blob "$lay" "$lay/index-img.json") || return 1
    media=application/vnd.oci.image.index.v1+json
  fi
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"%s","digest":"sha256:%s","size":%s%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$media" "${top% *}" "${top#* }" "$platform" "$name" "${name##*:}" >"$lay/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$lay/oci-layout"
  tar -C "$lay" --sort=name --mtime="@${SOURCE_DATE_EPOCH:-0}" --owner=0 --group=0 --numeric-owner \
    -cf "$out.tmp" oci-layout index.json blobs || { rm -rf "$lay" "$out.tmp"; return 1; }
  mv "$out.tmp" "$out"
  rm -rf "$lay"
  echo "sha256:${top% *}"
}
