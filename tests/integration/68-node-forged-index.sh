#!/bin/bash
# A member that forges the bytes of a lazily read file (issue 15 item 1). A pulls an image (plain
# tar) from the registry; afsp-forge then changes a byte of big in A's blob and the chaining value
# of its chunk in A's index, so that the forged chunk checks out against A's index. B mounts the
# image lazily, with A as the only peer, and reads big: until the layer is whole, what B shows is
# A's word. B's node completes the layer in the background (its verification): the rest of the
# chain does not fit A's index, the registry's bytes do not either, so the layer is downloaded
# whole, its digest proves it, and the index it gives differs from A's. B then bans A (its links
# are closed and refused; forged_indexes counts it; the log names A and both indexes), further
# reads of big through the old mount fail with EIO, and so do a stat of big and a readlink of
# link (what the false index says of them is not shown either), while the mount point itself
# stays reachable; a new mount equals umoci unpack.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
FORGE=$(dirname "$AFSP_BIN")/afsp-forge
start_registry
mkdir -p "$T/root/etc"
head -c $((8 << 20)) /dev/urandom >"$T/root/big"
echo "a file in another chunk" >"$T/root/etc/motd"
ln -s big "$T/root/link"
build_oci_of_dir "$T/root" "$T/oci" forged
push_image "$T/oci" forged "$REGISTRY/forged:1" --compress none
digest=$PUSHED_DIGEST
umoci_unpack_ref "$REGISTRY/forged:1" "$T/oracle"

A=$T/A B=$T/B
"$AFSP_BIN" --data "$A" pull "$REGISTRY/forged:1" >/dev/null
layer=$("$AFSP_BIN" --data "$A" layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"])')
"$FORGE" "$A" "$layer" big $((2 << 20)) || fail "afsp-forge failed"

pa=$(free_port) pb=$(free_port)
start_node nodeA "$A" "$pa"
NODE_ARGS=(--verify-rate 2M) # its verification's pace, from peers and from the registry
start_node nodeB "$B" "$pb" "$pa"
NODE_ARGS=()
NODEB_LOG=$BG_LOG
wait_until 15 has_peers "$B" 1
id_a=$("$AFSP_BIN" --data "$A" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["id"])')

log "B mounts lazily and reads big: its chunks come from A"
M=$T/mnt
mount_image "$B" "$REGISTRY/forged@$digest" "$M"
# before the read: once a read starts the verification, it may find A's index false at once
assert_eq big "$(readlink "$M/link")" "link before the verification"
t0=$(date +%s%N)
dd if="$M/big" of="$T/seen" bs=1M skip=2 count=1 status=none ||
    fail "the read of big through B's mount failed"

log "B's verification finds A's index false and bans A"
forged() { (($(counter "$B" forged_indexes) >= 1)); }
wait_until 60 forged
# A's chain breaks at the forged chunk, the registry's Range bytes do not fit A's index either,
# so the layer (8 MiB and a little) came whole from the registry, at 2 MiB/s: 4 s. Unpaced, it
# took 0.2 s.
elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
((elapsed_ms >= 3000)) || fail "the verification's registry download was not paced: ${elapsed_ms} ms"
assert_eq 1 "$(counter "$B" forged_indexes)" "forged indexes B found"
grep -q "event=forged_index layer=$layer sender=$id_a peer_index=sha256:" "$NODEB_LOG" ||
    fail "B's log does not name A as the sender of the forged index"
wait_until 15 no_peers "$B"
read -r nver nlayers <<<"$(verified "$B")"
assert_eq "$nlayers" "$nver" "layers B holds verified after the verification"

log "the old mount fails reads of big with EIO; a new one is the image"
eio() { ! dd if="$M/big" of=/dev/null bs=1M skip=2 count=1 status=none 2>/dev/null; }
wait_until 15 eio
out=$(dd if="$M/big" of=/dev/null bs=1M count=1 2>&1) && fail "a read of big succeeded after the index was shown false"
assert_contains "$out" "Input/output error"
log "... and so do stat and readlink of the layer's entries (the kernel forgets what it cached)"
stat_eio() { ! stat "$M/big" >/dev/null 2>&1; }
wait_until 5 stat_eio
out=$(stat "$M/big" 2>&1) && fail "a stat of big succeeded after the index was shown false"
assert_contains "$out" "Input/output error"
out=$(readlink -v "$M/link" 2>&1) && fail "a readlink of link succeeded after the index was shown false"
assert_contains "$out" "Input/output error"
stat "$M" >/dev/null || fail "the old mount point is no longer reachable"
M2=$T/mnt2
mount_image "$B" "$REGISTRY/forged@$digest" "$M2" --verified
assert_tree_eq "$T/oracle" "$M2"
cmp "$M2/big" "$T/root/big" || fail "big on the new mount is not the file"

log "A cannot come back: B refuses its connections"
kill_bg "$(pgrep -f "node --listen 127.0.0.1:$pa" | head -1)"
start_node nodeA "$A" "$pa" "$pb"
refused() { grep -q "event=forger_refused" "$NODEB_LOG"; }
wait_until 15 refused
no_peers "$B" || fail "B links to A again"
"$AFSP_BIN" --data "$B" umount "$M2"
"$AFSP_BIN" --data "$B" umount "$M"
log "ok"
