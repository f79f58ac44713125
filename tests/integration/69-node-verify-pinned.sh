#!/bin/bash
# A verification completes the image that was read, not whatever its tag names later (issue 15):
# B mounts forged:1 lazily (its index from A), the tag is then pushed again with other content,
# and B's mount reads a file. B's node completes the layer it read, from the manifest the mount
# shows, and its record of the image stays that manifest. The old node pulled the tag again: it
# fetched the new image, left the layer the mount read partial, and repointed the record.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
start_registry
mkdir -p "$T/one" "$T/two"
head -c $((4 << 20)) /dev/urandom >"$T/one/big"
head -c $((4 << 20)) /dev/urandom >"$T/two/other"
build_oci_of_dir "$T/one" "$T/oci1" one
push_image "$T/oci1" one "$REGISTRY/pinned:1" --compress none
first=$PUSHED_DIGEST

A=$T/A B=$T/B
"$AFSP_BIN" --data "$A" pull "$REGISTRY/pinned:1" >/dev/null
layer=$("$AFSP_BIN" --data "$A" layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"])')
pa=$(free_port) pb=$(free_port)
start_node nodeA "$A" "$pa"
start_node nodeB "$B" "$pb" "$pa"
NODEB_LOG=$BG_LOG
wait_until 15 has_peers "$B" 1

M=$T/mnt
mount_image "$B" "$REGISTRY/pinned:1" "$M"
log "the tag moves to another image; then B's mount reads"
build_oci_of_dir "$T/two" "$T/oci2" two
push_image "$T/oci2" two "$REGISTRY/pinned:1" --compress none
assert_ne "$first" "$PUSHED_DIGEST" "the tag's new manifest"
cmp "$M/big" "$T/one/big" || fail "big through B's mount is not the file"

layer_verified() {
    "$AFSP_BIN" --data "$B" layers --json | "$PY" -c 'import json,sys
l = [x for x in json.load(sys.stdin) if x["digest"] == sys.argv[1]]
sys.exit(0 if l and l[0]["verified"] else 1)' "$layer"
}
wait_until 60 layer_verified
grep -q "event=verify .*result=\"ok\"" "$NODEB_LOG" || fail "B's verification did not end well"
read -r nver nlayers <<<"$(verified "$B")"
assert_eq 1 "$nlayers" "layers B holds (none of the tag's new image)"
images=$("$AFSP_BIN" --data "$B" images --json)
assert_contains "$images" "$first"
assert_not_contains "$images" "$PUSHED_DIGEST"
"$AFSP_BIN" --data "$B" umount "$M"
log "ok"
