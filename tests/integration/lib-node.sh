# lib-node.sh - helpers for tests of `afsp node`; source after lib.sh. Nodes share the cluster
# key $TEST_TMPDIR/cluster.key (made by the first start_node).
#
#   start_node NAME DATA PORT [SEED...]        a node on ${NODE_HOST:-127.0.0.1}:PORT (in network
#                                              namespace $NODE_NETNS if set), with the options in
#                                              the array NODE_ARGS if set, run under the command
#                                              in the array NODE_WRAP if set; a SEED is a port on
#                                              127.0.0.1 or HOST:PORT; sets BG_PID
#   peer_count DATA                            peers the node on DATA has
#   has_peers DATA N                           ... at least N (the DHT may connect more)
#   no_peers DATA                              ... none
#   counter DATA NAME                          one of its stats counters
#   dht DATA NAME                              one of its DHT stats (stats --json .dht)
#   chunks DATA                                "present total" chunks over its layers
#   verified DATA                              "verified held": its layers whose index it built
#   all_verified DATA                          ... every one of them
#   netns_cluster N RATE                       N nodes, each in a network namespace of its own on
#                                              one bridge (lib.sh: netns_hub, netns_join), what
#                                              each sends capped at RATE; this namespace is on
#                                              the bridge at $NET_HOST (a registry may listen
#                                              there); sets D[1..N], P[], PID[]; waits until
#                                              each knows the N-1 others in its DHT
#   registry_gets LOG DIGEST [SKIP]            "count bytes" of the GETs of blob DIGEST in a
#                                              registry's access log (past its first SKIP lines)
#   registry_with_stress_image                 a registry serving the stress image (gzip) as
#                                              $name:1; sets name and digest (its manifest's)

start_node() {
    local name=$1 data=$2 port=$3 seeds=() s
    shift 3
    [ -e "$TEST_TMPDIR/cluster.key" ] || "$AFSP_BIN" genkey >"$TEST_TMPDIR/cluster.key"
    for s in "$@"; do [[ $s == *:* ]] && seeds+=(--seed "$s") || seeds+=(--seed "127.0.0.1:$s"); done
    start_bg "$name" ${NODE_NETNS:+ip netns exec "$NODE_NETNS"} ${NODE_WRAP[@]+"${NODE_WRAP[@]}"} \
        "$AFSP_BIN" -v --data "$data" node \
        --listen "${NODE_HOST:-127.0.0.1}:$port" \
        --cluster-key-file "$TEST_TMPDIR/cluster.key" "${seeds[@]}" ${NODE_ARGS[@]+"${NODE_ARGS[@]}"}
    wait_port "$port" 15 "$BG_PID" "${NODE_HOST:-127.0.0.1}"
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
all_verified() { read -r nver nlayers <<<"$(verified "$1")"; ((nver == nlayers)); } # DATA

registry_with_stress_image() {
    start_registry
    build_stress_image "$TEST_TMPDIR/oci" stress
    push_image "$TEST_TMPDIR/oci" stress "$REGISTRY/stress:1" --compress gzip
    digest=$PUSHED_DIGEST
    name=$REGISTRY/stress
}

registry_gets() {
    "$PY" - "$1" "$2" "${3:-0}" <<'EOF'
import re, sys
n = b = 0
for i, line in enumerate(open(sys.argv[1], errors="replace")):
    if i < int(sys.argv[3]) or "response completed" not in line:
        continue
    if "http.request.method=GET" not in line or "/blobs/" + sys.argv[2] not in line:
        continue
    m = re.search(r"http\.response\.written=(\d+)", line)
    n += 1
    b += int(m.group(1)) if m else 0
print(n, b)
EOF
}

# find_claimant LOG...: sets CLAIMANT to the position (from 1) of the first daemon log that
# shows a layer's claim granted (event=claim); fails while none does (for wait_until).
find_claimant() {
    local k=0 log
    for log in "$@"; do
        k=$((k + 1))
        if grep -q "event=claim layer=" "$log"; then
            CLAIMANT=$k
            return 0
        fi
    done
    return 1
}

netns_cluster() {
    local n=$1 rate=$2 i sub=10.232.$((RANDOM % 250)) tag=$$x$((++_NETNS_CLUSTERS))
    NET_HOST=$sub.254
    netns_hub "afsph$tag" "$NET_HOST"
    D=() P=() PID=()
    for ((i = 1; i <= n; i++)); do
        netns_join "afsph$tag" "afspn$tag-$i" "$sub.$i" "$rate"
        D[i]=$TEST_TMPDIR/ns$tag-$i P[i]=$(free_port)
        if ((i == 1)); then
            NODE_NETNS=afspn$tag-1 NODE_HOST=$sub.1 start_node "ns$tag-$i" "${D[i]}" "${P[i]}"
        else
            NODE_NETNS=afspn$tag-$i NODE_HOST=$sub.$i start_node "ns$tag-$i" "${D[i]}" "${P[i]}" \
                "$sub.1:${P[1]}"
        fi
        PID[i]=$BG_PID
    done
    for ((i = 1; i <= n; i++)); do wait_until 30 dht_at_least "${D[i]}" contacts $((n - 1)); done
}
_NETNS_CLUSTERS=0
