# The operator of the previous release, for the day-two upgrade: the commit named in
# e2e/k8s/previous-release, built from this repository's history with the release profile. Its
# binary is cached by commit in $CACHE_ROOT/upgrade/ (its target dir too, so that moving the
# commit forward rebuilds only what changed).

PREVIOUS_IMAGE=localhost/pgreplica-e2e/pgreplica:previous

build_previous() {
  PREVIOUS_COMMIT=$(grep -v '^#' "$REPO/e2e/k8s/previous-release" | head -1)
  local dir=$CACHE_ROOT/upgrade t0; t0=$(now)
  PREVIOUS_BIN=$dir/$PREVIOUS_COMMIT/pgreplica
  if [ ! -x "$PREVIOUS_BIN" ]; then
    git -C "$REPO" cat-file -e "$PREVIOUS_COMMIT^{commit}" 2>/dev/null \
      || die "commit $PREVIOUS_COMMIT (e2e/k8s/previous-release) is not in this clone's history: clone with full history"
    local src=$WORK/previous-src; mkdir -p "$src" "$dir/$PREVIOUS_COMMIT"
    git -C "$REPO" archive "$PREVIOUS_COMMIT" | tar -x -C "$src"
    (cd "$src" && CARGO_TARGET_DIR=$dir/target nice cargo build -q --release --locked -p pgreplica) \
      || die "building the previous release $PREVIOUS_COMMIT failed"
    cp "$dir/target/release/pgreplica" "$PREVIOUS_BIN.tmp" && mv "$PREVIOUS_BIN.tmp" "$PREVIOUS_BIN"
    rm -rf "$src"
    log "previous release ${PREVIOUS_COMMIT:0:7} built in $(since "$t0")s"
  else
    log "previous release ${PREVIOUS_COMMIT:0:7}: cached in $dir"
  fi
}
