#!/bin/bash
# When no peer has a chunk, the registry does, by range: B mounts an image lazily (indexes from
# A), then A goes away; every read on B is answered with chunks fetched by Range requests from the
# registry and checked against A's index, and the tree equals `umoci unpack`. A pull then
# completes B's partial layers the same way: whole, equal to A's blobs byte for byte.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
registry_with_stress_image
umoci_unpack_ref "$REGISTRY/stress:1" "$T/oracle"

pa=$(free_port) pb=$(free_port)
A=$T/A B=$T/B
start_node nodeA "$A" "$pa"
PIDA=$BG_PID
start_node nodeB "$B" "$pb" "$pa"
wait_until 15 has_peers "$B" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/stress:1" >/dev/null

M=$T/mnt
mount_image "$B" "$name@$digest" "$M"
assert_eq 0 "$(chunks "$B" | cut -d' ' -f1)" "chunks on B right after the mount"
kill_bg "$PIDA"
wait_until 15 no_peers "$B"
assert_tree_eq "$T/oracle" "$M" --exclude implicit/a --exclude late --unprivileged # a peer's index
((0 + $(counter "$B" registry_fetches) >= 1)) || fail "no chunk came from the registry"
assert_eq 0 "$(counter "$B" chunks_fetched)" "chunks B got from peers"
assert_eq 0 "$(counter "$B" fetches_failed)" "failed fetches on B"
"$AFSP_BIN" --data "$B" umount "$M"

"$AFSP_BIN" --data "$B" pull "$name@$digest" >/dev/null
read -r present total <<<"$(chunks "$B")"
assert_eq "$total" "$present" "chunks on B after the pull"
"$AFSP_BIN" --data "$B" layers --json | "$PY" -c 'import json,sys
assert all(x["complete"] for x in json.load(sys.stdin))' || fail "a layer of B is not complete"
for l in $(cd "$A/blobs/sha256" && ls); do
    cmp "$A/blobs/sha256/$l" "$B/blobs/sha256/$l" || fail "blob $l on B differs from A's"
done
log "ok"
