# lib-node.sh - helpers for tests of `afsp node`; source after lib.sh. Nodes share the cluster
# key $TEST_TMPDIR/cluster.key (made by the first start_node).
#
#   start_node NAME DATA PORT [SEED_PORT...]   a node on 127.0.0.1:PORT, with the options in the
#                                              array NODE_ARGS if set; sets BG_PID
#   peer_count DATA                            peers the node on DATA has
#   has_peers DATA N                           ... at least N (the DHT may connect more)
#   no_peers DATA                              ... none
#   counter DATA NAME                          one of its stats counters
#   dht DATA NAME                              one of its DHT stats (stats --json .dht)
#   chunks DATA                                "present total" chunks over its layers
#   registry_with_stress_image                 a registry serving the stress image (gzip) as
#                                              $name:1; sets name and digest (its manifest's)

start_node() {
    local name=$1 data=$2 port=$3 seeds=() s
    shift 3
    [ -e "$TEST_TMPDIR/cluster.key" ] || "$AFSP_BIN" genkey >"$TEST_TMPDIR/cluster.key"
    for s in "$@"; do seeds+=(--seed "127.0.0.1:$s"); done
    start_bg "$name" "$AFSP_BIN" -v --data "$data" node --listen "127.0.0.1:$port" \
        --cluster-key-file "$TEST_TMPDIR/cluster.key" "${seeds[@]}" ${NODE_ARGS[@]+"${NODE_ARGS[@]}"}
    wait_port "$port" 15 "$BG_PID"
}

peer_count() {
    "$AFSP_BIN" --data "$1" peers --json |
        "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))'
}
has_peers() { (($(peer_count "$1") >= $2)); }
no_peers() { [ "$(peer_count "$1")" = 0 ]; }

counter() {
    "$AFSP_BIN" --data "$1" stats --json |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["counters"][sys.argv[1]])' "$2"
}

dht() {
    "$AFSP_BIN" --data "$1" stats --json |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["dht"][sys.argv[1]])' "$2"
}

dht_at_least() { (($(dht "$1" "$2") >= $3)); } # DATA FIELD N

chunks() {
    "$AFSP_BIN" --data "$1" layers --json | "$PY" -c 'import json,sys
l = json.load(sys.stdin); print(sum(x["chunksPresent"] for x in l), sum(x["chunks"] for x in l))'
}

verified() { # DATA: the layers verified, of all the layers held
    "$AFSP_BIN" --data "$1" layers --json | "$PY" -c 'import json,sys
l = json.load(sys.stdin); print(sum(x["verified"] for x in l), len(l))'
}

registry_with_stress_image() {
    start_registry
    build_stress_image "$TEST_TMPDIR/oci" stress
    push_image "$TEST_TMPDIR/oci" stress "$REGISTRY/stress:1" --compress gzip
    digest=$PUSHED_DIGEST
    name=$REGISTRY/stress
}
