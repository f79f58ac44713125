#!/bin/bash
# A mount outlives its node (issue 15 item 8). B mounts lazily an image whose 256 MiB file A
# holds; B's node is killed with SIGKILL and started again 20 times, each time while a read of a
# part of the file B does not hold yet is in progress. The reads wait for the node instead of
# failing with EIO (they used to fail at the first kill), and every byte read equals the file.
# Then B's node is stopped (SIGSTOP), then killed: a read of a chunk not here yet fails with EIO
# once the mount's --node-wait (3 s) is over, not before (a stopped node's control call used to
# hang the reader for good). Started again, the node serves both mounts the whole file.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
RESTARTS=20
start_registry
mkdir -p "$T/root"
head -c $((256 << 20)) /dev/urandom >"$T/root/big"
build_oci_of_dir "$T/root" "$T/oci" big
push_image "$T/oci" big "$REGISTRY/big:1" --compress none
digest=$PUSHED_DIGEST

pa=$(free_port) pb=$(free_port)
A=$T/A B=$T/B
start_node nodeA "$A" "$pa"
start_node nodeB "$B" "$pb" "$pa"
PIDB=$BG_PID
wait_until 15 has_peers "$B" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/big:1" >/dev/null

log "B mounts the image lazily"
M=$T/mnt
mount_image "$B" "$REGISTRY/big@$digest" "$M"

# Each round: B's node is stopped (SIGSTOP), a reader starts reading a MiB of big that B does not
# hold, and once it is inside read() the node is killed (SIGKILL) and started again (every fifth
# time after 2 s, as in the issue). The read must wait and then give the file's bytes.
in_read() { [ "$(cut -d' ' -f1 "/proc/$1/syscall" 2>/dev/null)" = 0 ]; } # read(2), on stdin: big
present() { read -r p _ <<<"$(chunks "$B")"; echo "$p"; }
for ((i = 0; i < RESTARTS; i++)); do
    before=$(present)
    kill -STOP "$PIDB"
    dd if="$M/big" of="$T/seg" bs=1M skip=$((i * 12)) count=1 status=none &
    ddpid=$!
    wait_until 15 in_read "$ddpid"
    kill -KILL "$PIDB"
    wait "$PIDB" 2>/dev/null || true
    ((i % 5 == 4)) && sleep 2 # the node is away a while: the read goes on waiting
    start_node nodeB "$B" "$pb" "$pa"
    PIDB=$BG_PID
    wait "$ddpid" || fail "round $i: the read failed while B's node was killed and restarted"
    cmp "$T/seg" <(dd if="$T/root/big" bs=1M skip=$((i * 12)) count=1 status=none) ||
        fail "round $i: the MiB read differs from the file"
    (($(present) > before)) || fail "round $i: the read needed no chunk from the node"
done
log "killed and restarted B's node $RESTARTS times, each during a read"

log "B's node stops answering, then dies for good: reads fail with EIO after --node-wait"
M2=$T/mnt2
mount_image "$B" "$REGISTRY/big@$digest" "$M2" --node-wait 3
# read_fails_after_wait SKIP_MIB: a MiB of big that B does not hold fails, after 3 s to 20 s
read_fails_after_wait() {
    local t0 out ms
    t0=$(date +%s%N)
    if out=$(timeout 60 dd if="$M2/big" of=/dev/null bs=1M skip="$1" count=1 2>&1); then
        fail "a read of chunks nobody can fetch succeeded"
    fi
    ms=$((($(date +%s%N) - t0) / 1000000))
    assert_contains "$out" "Input/output error"
    ((ms >= 3000 && ms < 20000)) || fail "the read failed after $ms ms, not after the 3 s wait"
}
kill -STOP "$PIDB" # the control call gets no answer: it times out (it used to wait forever)
read_fails_after_wait 6
kill -KILL "$PIDB"
wait "$PIDB" 2>/dev/null || true
read_fails_after_wait 18

log "B's node is back: both mounts read the whole file"
start_node nodeB "$B" "$pb" "$pa"
cmp "$M/big" "$T/root/big" || fail "big read through the mount differs from the file"
cmp "$M2/big" "$T/root/big" || fail "big read through the second mount differs from the file"
assert_eq 0 "$(counter "$B" fetches_failed)" "failed fetches on B's last node"
"$AFSP_BIN" --data "$B" umount "$M2"
"$AFSP_BIN" --data "$B" umount "$M"
log "ok"
