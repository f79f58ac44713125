#!/bin/bash
# Nodes on loopback: B pulls by digest every byte from A with the registry stopped (manifest,
# config and layers are blobs), and the layers it stores equal A's; peers/stats show the link; a
# node with another cluster key gets nothing; the control socket is 0600; SIGTERM stops a node
# cleanly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

start_registry
build_fixture_image "$TEST_TMPDIR/oci" fx
push_image "$TEST_TMPDIR/oci" fx "$REGISTRY/fx:1" --compress gzip
digest=$PUSHED_DIGEST
name=${REGISTRY}/fx

"$AFSP_BIN" genkey >"$TEST_TMPDIR/cluster.key"
"$AFSP_BIN" genkey >"$TEST_TMPDIR/other.key"
pa=$(free_port) pb=$(free_port) pc=$(free_port)
A=$TEST_TMPDIR/A B=$TEST_TMPDIR/B C=$TEST_TMPDIR/C

start_bg nodeA "$AFSP_BIN" -v --data "$A" node --listen "127.0.0.1:$pa" \
    --cluster-key-file "$TEST_TMPDIR/cluster.key"
PIDA=$BG_PID
wait_port "$pa" 15 "$PIDA"
start_bg nodeB "$AFSP_BIN" -v --data "$B" node --listen "127.0.0.1:$pb" --seed "127.0.0.1:$pa" \
    --cluster-key-file "$TEST_TMPDIR/cluster.key"
PIDB=$BG_PID
wait_port "$pb" 15 "$PIDB"

wait_until 15 has_peers "$A" 1
wait_until 15 has_peers "$B" 1

sock_mode=$(stat -c %a "$A/afsp.sock")
assert_eq 600 "$sock_mode" "control socket mode"

# A pulls from the registry, through its node.
out=$("$AFSP_BIN" --data "$A" pull "$REGISTRY/fx:1")
assert_eq "$REGISTRY/fx:1 $digest" "$out" "A pulls from the registry"

# The registry goes away; B pulls by digest: every byte from A.
kill_bg "$REGISTRY_PID"
out=$("$AFSP_BIN" --data "$B" pull "$name@$digest")
assert_eq "$name@$digest $digest" "$out" "B pulls by digest from A"
"$AFSP_BIN" --data "$A" layers --json >"$TEST_TMPDIR/la.json"
"$AFSP_BIN" --data "$B" layers --json >"$TEST_TMPDIR/lb.json"
"$PY" - "$TEST_TMPDIR/la.json" "$TEST_TMPDIR/lb.json" <<'PYEOF' || fail "B's layers differ from A's"
import json, sys
a = {x["digest"]: x for x in json.load(open(sys.argv[1]))}
b = {x["digest"]: x for x in json.load(open(sys.argv[2]))}
assert a.keys() == b.keys() and len(a) >= 1, (a.keys(), b.keys())
for d in a:
    assert b[d]["complete"] and b[d]["chunks"] == b[d]["chunksPresent"], b[d]
    for k in ("size", "uncompressedSize", "chunks", "files"):
        assert a[d][k] == b[d][k], (k, a[d][k], b[d][k])
PYEOF
for l in $(cd "$A/blobs/sha256" && ls); do
    cmp "$A/blobs/sha256/$l" "$B/blobs/sha256/$l" || fail "blob $l differs"
done
# What B's store holds reads back as the image does on A, once B has built its own indexes of
# the layers (until then it leaves out what only a built index may show: devices, setuid bits).
wait_until 60 all_verified "$B"
"$AFSP_BIN" --data "$A" inspect extract "$name@$digest" "$TEST_TMPDIR/exA"
"$AFSP_BIN" --data "$B" inspect extract "$name@$digest" "$TEST_TMPDIR/exB"
assert_tree_eq "$TEST_TMPDIR/exA" "$TEST_TMPDIR/exB"

"$AFSP_BIN" --data "$B" stats --json >"$TEST_TMPDIR/sb.json"
"$AFSP_BIN" --data "$A" stats --json >"$TEST_TMPDIR/sa.json"
"$PY" - "$TEST_TMPDIR/sa.json" "$TEST_TMPDIR/sb.json" <<'PYEOF' || fail "stats do not show the transfer"
import json, sys
a = json.load(open(sys.argv[1]))["stats"]
b = json.load(open(sys.argv[2]))["stats"]
assert b["counters"]["chunks_fetched"] >= 1 and b["counters"]["blobs_fetched"] >= 2, b
assert a["counters"]["chunks_served"] == b["counters"]["chunks_fetched"], (a, b)
assert b["counters"]["bad_chunks"] == 0 and b["peers"] == 1 and a["peers"] == 1, b
assert b["store"]["layers"] >= 1 and b["store"]["images"] == 1, b
PYEOF
"$AFSP_BIN" --data "$B" peers | grep -q "127.0.0.1:$pa" || fail "peers does not list A's address"

# A node with another cluster key gets no connection, and nothing from A.
start_bg nodeC "$AFSP_BIN" -v --data "$C" node --listen "127.0.0.1:$pc" --seed "127.0.0.1:$pa" \
    --cluster-key-file "$TEST_TMPDIR/other.key"
PIDC=$BG_PID
wait_port "$pc" 15 "$PIDC"
failed_handshakes() { "$AFSP_BIN" --data "$A" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["counters"]["handshake_failures"])'; }
has_failed() { [ "$(failed_handshakes)" -ge 1 ]; }
wait_until 15 has_failed
assert_eq 0 "$(peer_count "$C")" "C has no peer"
assert_eq 1 "$(peer_count "$A")" "A still has only B"
expect_fail "$AFSP_BIN" --data "$C" pull "$name@$digest"

# SIGTERM: the node stops, removes its socket, and the CLI works without it.
kill -TERM "$PIDB"
wait "$PIDB" 2>/dev/null && rcb=0 || rcb=$?
assert_eq 0 "$rcb" "node B exits 0 on SIGTERM"
[ ! -e "$B/afsp.sock" ] || fail "B's control socket is left behind"
"$AFSP_BIN" --data "$B" images | grep -q "fx" || fail "B's image is listed without the node"
log "ok"
