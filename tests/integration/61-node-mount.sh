#!/bin/bash
# Mounts through a node, and peers that fail: B mounts an image it does not hold, with the
# registry stopped; the node adds its layers in part (manifest, config and indexes from A) and
# fetches chunks from A as they are read; a first read leaves the layers partial; the whole tree
# equals `umoci unpack`. Then A's stored blobs are corrupted on disk, so A serves bad chunks: a
# third node C pulls the image, catches them, and gets every chunk from B. Last, A freezes and is
# killed while a fourth node's mount has requests waiting on it: the rest comes from B.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
registry_with_stress_image
umoci_unpack_ref "$REGISTRY/stress:1" "$T/oracle"

pa=$(free_port) pb=$(free_port) pc=$(free_port)
A=$T/A B=$T/B C=$T/C

start_node nodeA "$A" "$pa"
PIDA=$BG_PID
start_node nodeB "$B" "$pb" "$pa"
wait_until 15 has_peers "$B" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/stress:1" >/dev/null
kill_bg "$REGISTRY_PID"

log "B mounts the image by digest: the node adds it in part, chunks come from A as read"
M=$T/mnt
mount_image "$B" "$name@$digest" "$M"
read -r present total <<<"$(chunks "$B")"
assert_eq 0 "$present" "chunks on B right after the mount"
((total > 5)) || fail "the image has only $total chunks"
cmp "$M/content/evolve" "$T/oracle/content/evolve" || fail "a file read through B differs"
read -r present total <<<"$(chunks "$B")"
((present >= 1 && present < total)) || fail "after one read B has $present of $total chunks"
((present >= 1 && $(counter "$B" fetches) >= 1)) || fail "B's node fetched nothing"
# B's index of the layer is A's: setuid bits, devices and capabilities are withheld
read -r nver nlayers <<<"$(verified "$B")"
((nver < nlayers)) || fail "B holds layers in part and counts $nver of $nlayers verified"
assert_tree_eq "$T/oracle" "$M" --ignore dirmtime --unprivileged
assert_tree_eq "$T/oracle" "$M" --exclude implicit/a --exclude late --unprivileged
[ -u "$T/oracle/modes/setuid" ] && [ ! -u "$M/modes/setuid" ] ||
    fail "the setuid bit of modes/setuid is shown from a peer's index"
assert_eq 0 "$(counter "$B" fetches_failed)" "failed fetches on B"
assert_eq 0 "$(counter "$B" bad_chunks)" "bad chunks on B"
# the rest of the image, by a pull through the node: B holds it whole
"$AFSP_BIN" --data "$B" pull "$name@$digest" >/dev/null
read -r present total <<<"$(chunks "$B")"
assert_eq "$total" "$present" "chunks on B after a pull"
wait_until 60 all_verified "$B" # B's node builds their indexes in the background

"$AFSP_BIN" --data "$B" umount "$M"

log "B holds the layer whole and built its index from the blob: everything is shown"
mount_image "$B" "$name@$digest" "$M"
[ -u "$M/modes/setuid" ] || fail "after B verified the layer, modes/setuid is not setuid"
assert_tree_eq "$T/oracle" "$M" --exclude implicit/a --exclude late
"$AFSP_BIN" --data "$B" umount "$M"

log "C pulls while A serves corrupted chunks: all from B"
# Flip a bit every 16 KiB of every layer blob A holds: A serves what it stores unchecked.
for f in "$A"/blobs/sha256/*; do
    "$PY" - "$f" <<'PYEOF'
import os, sys
with open(sys.argv[1], "r+b") as f:
    for off in range(8192, os.fstat(f.fileno()).st_size, 16384):
        f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x10]))
PYEOF
done
start_node nodeC "$C" "$pc" "$pa" "$pb"
wait_until 15 has_peers "$C" 2
"$AFSP_BIN" --data "$C" pull "$name@$digest" >/dev/null
((0 + $(counter "$C" bad_chunks) >= 1)) || fail "C did not catch A's corrupted chunks"
read -r present total <<<"$(chunks "$C")"
assert_eq "$total" "$present" "chunks on C"
for l in $(cd "$B/blobs/sha256" && ls); do
    cmp "$B/blobs/sha256/$l" "$C/blobs/sha256/$l" || fail "blob $l on C differs from B's"
done

# A fourth node mounts the image (indexes from A and B); then A freezes, so D's requests to it
# stall, and is killed with requests in flight: D's link to it closes. The read, and the whole
# tree, get everything from B. --no-trace: D fetches nothing ahead (B's mount recorded the
# image's start trace), so no chunk of A's is asked for, found false and A banned, before A stops.
pd=$(free_port)
D=$T/D
start_node nodeD "$D" "$pd" "$pa" "$pb"
wait_until 15 has_peers "$D" 2
M2=$T/mnt2
mount_image "$D" "$name@$digest" "$M2" --no-trace
kill -STOP "$PIDA"
on_exit "kill -CONT $PIDA 2>/dev/null"
cat "$M2/bigdata/text" >"$T/bigtext" &
reader=$!
# requests_out D has waiting on its link to A
asked_of_a() {
    "$AFSP_BIN" --data "$D" peers --json | "$PY" -c 'import json,sys
print(sum(p["requests_out"] for p in json.load(sys.stdin)["peers"] if p["address"].endswith(":" + sys.argv[1])))' "$pa"
}
waiting_on_a() { (($(asked_of_a) >= 1)); }
wait_until 15 waiting_on_a # the read's chunks are asked of A and B in turn
kill -KILL "$PIDA"
wait "$reader" || fail "a read on D failed after A died"
cmp "$T/bigtext" "$T/oracle/bigdata/text" || fail "the file read while A died differs"
assert_tree_eq "$T/oracle" "$M2" --exclude implicit/a --exclude late --unprivileged
assert_eq 0 "$(counter "$D" fetches_failed)" "failed fetches on D"
"$AFSP_BIN" --data "$D" umount "$M2"
log "ok"
