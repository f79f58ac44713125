#!/bin/bash
# A cluster that sat idle: issue 14's bug, as a new user met it. Real daemons with every duration
# of the node divided by 120 (AFSP_TEST_TIME_DIVISOR: record TTL 5 s, republish 2 s, bucket
# refresh 5 s, idle close 1 s, ban 0.5 s; stall, hedge, handshake and DHT request timeouts at
# their 250 ms floor). A pulls an image; the cluster then
# sits idle for twice its longest timeout; B mounts the image by digest from a registry address
# nobody listens on (so every byte must come from A), reads it, and its tree equals umoci
# unpack. A third node, with the registry up, takes the manifest and config from A too: the
# registry sees no request from it. Records are still held and providers found after the idle.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

export AFSP_TEST_TIME_DIVISOR=120
LONGEST_S=5 # the longest duration (record TTL, bucket refresh: 10 min) divided by 120
T=$TEST_TMPDIR
registry_with_stress_image
umoci_unpack_ref "$REGISTRY/stress:1" "$T/oracle"

pa=$(free_port) pb=$(free_port) pc=$(free_port)
A=$T/A B=$T/B C=$T/C
start_node nodeA "$A" "$pa"
start_node nodeB "$B" "$pb" "$pa"
start_node nodeC "$C" "$pc" "$pa"
wait_until 15 has_peers "$B" 1
wait_until 15 has_peers "$C" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/stress:1" >/dev/null
layer=$("$AFSP_BIN" --data "$A" layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"])')

log "the cluster sits idle for $((2 * LONGEST_S)) s: twice its longest timeout"
sleep $((2 * LONGEST_S))

log "B finds A by the DHT, and A's records are still held"
id_a=$("$AFSP_BIN" --data "$A" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["id"])')
"$AFSP_BIN" --data "$B" providers --json "$digest" | grep -q "$id_a" || fail "B's lookup of the manifest does not name A"
(($(dht "$B" records) + $(dht "$C" records) >= 1)) || fail "no node holds A's records after the idle"

log "B mounts by digest from a registry address nobody listens on: everything from A"
dead=$(free_port)
M=$T/mnt
mount_image "$B" "127.0.0.1:$dead/stress@$digest" "$M"
assert_tree_eq "$T/oracle" "$M" --ignore dirmtime --unprivileged # a peer's index
assert_eq 0 "$(counter "$B" registry_fetches)" "chunks B took from the registry"
assert_eq 0 "$(counter "$B" stalls)" "requests of B that stalled"
assert_eq 0 "$(counter "$B" fetches_failed)" "B's failed fetches"
(($(counter "$B" blobs_fetched) >= 3)) || fail "B fetched $(counter "$B" blobs_fetched) blobs from peers (manifest, config, indexes)"
"$AFSP_BIN" --data "$B" umount "$M"

log "C, with the registry up, takes the manifest and config from A, not from the registry"
before=$(grep -c 'afsp/' "$REGISTRY_LOG" || true)
"$AFSP_BIN" --data "$C" pull "$name@$digest" >/dev/null
after=$(grep -c 'afsp/' "$REGISTRY_LOG" || true)
assert_eq "$before" "$after" "requests afsp made of the registry while C pulled"
(($(counter "$C" blobs_fetched) >= 2)) || fail "C fetched no manifest or config from a peer"
assert_eq 0 "$(counter "$C" stalls)" "requests of C that stalled"
read -r present total <<<"$(chunks "$C")"
assert_eq "$total" "$present" "chunks on C"
"$AFSP_BIN" --data "$B" providers --json "$layer" | grep -q "$id_a" || fail "B's lookup of the layer does not name A"
log "ok"
