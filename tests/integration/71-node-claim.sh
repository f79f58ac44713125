#!/bin/bash
# Single flight on real daemons (docs/swarm.md): 10 nodes, each on its own 127.0.1.x address,
# that hold nothing mount the debootstrap python image at once and run `python3 -c 'import
# json'` from it; the registry's access log shows the layer's bytes served once (at most 1.05
# times). Then again on a fresh cluster whose registry sits in a network namespace capped at
# 80 Mbit/s, so that its download takes seconds: the node that claimed the layer is killed with
# SIGKILL a third of the way through, once its standby has read that much of its download; the
# standby takes the claim over when the lease runs out and asks the registry for the rest only
# (a Range request), and the nine others all run python; the registry served the layer at most
# 1.05 times in all. Last, 10 nodes pull the image whole at once from that registry: it serves
# the layer once, the standby reads the claimant's download as it runs, and each other node the
# download of the one before it (the relay chain).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

CACHE=${AFSP_TEST_CACHE:-/var/cache/afsp-test}
T=$TEST_TMPDIR
N=10
build_debian_python_rootfs "$CACHE/debian12-python3.rootfs"
build_debian_python_oci "$CACHE/debian12-python3.rootfs" "$CACHE/debian12-python3.oci" py

# cluster NET: N nodes on 127.0.NET.1..N, all seeded with the first; waits until each knows
# every other in its DHT (so that all ask the same node for a layer's claim). Sets D[], P[],
# PID[], LOGN[].
cluster() {
    local net=$1 i port
    D=() P=() PID=() LOGN=()
    for ((i = 1; i <= N; i++)); do
        port=$(free_port)
        D[i]=$T/n$net-$i P[i]=$port
        if ((i == 1)); then
            NODE_HOST=127.0.$net.1 start_node "node$net-$i" "${D[i]}" "$port"
        else
            NODE_HOST=127.0.$net.$i start_node "node$net-$i" "${D[i]}" "$port" "127.0.$net.1:${P[1]}"
        fi
        PID[i]=$BG_PID LOGN[i]=$BG_LOG
    done
    for ((i = 1; i <= N; i++)); do wait_until 30 dht_at_least "${D[i]}" contacts $((N - 1)); done
}

# storm REF: every node of the cluster mounts REF at once and runs python3 from it; the status
# of each is in $T/rc.<i>.
storm() {
    local ref=$1 i
    for ((i = 1; i <= N; i++)); do
        mkdir -p "$T/m$i"
        on_exit "_unmount_at_exit '$T/m$i'"
        rm -f "$T/rc.$i"
        (
            rc=0
            "$AFSP_BIN" --data "${D[i]}" mount ${INSECURE:+--insecure-registry "$INSECURE"} \
                "$ref" "$T/m$i" >"$T/mount.$i.log" 2>&1 &&
                out=$(chroot "$T/m$i" /usr/bin/python3 -c 'import json; print(json.dumps([1]))' 2>&1) &&
                [ "$out" = "[1]" ] || rc=1
            echo "$rc" >"$T/rc.$i"
        ) &
        STORM[i]=$!
    done
}

storm_wait() { # waits for every mount of the storm (each bounded by the mount and node timeouts)
    local i
    for ((i = 1; i <= N; i++)); do wait "${STORM[i]}" || true; done
}

cp -a "$CACHE/debian12-python3.oci" "$T/oci"

log "10 nodes that hold nothing mount the python image at once"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py"
read -r layer <<<"$(layer_digests "$REGISTRY/debian:py")"
size=$(curl -fsSI "http://$REGISTRY/v2/debian/blobs/$layer" | tr -d '\r' |
    awk 'tolower($1) == "content-length:" { print $2 }')
((size > 1000000)) || fail "the python layer is $size bytes"
cluster 1
storm "$REGISTRY/debian:py"
storm_wait
for ((i = 1; i <= N; i++)); do
    [ "$(cat "$T/rc.$i" 2>/dev/null)" = 0 ] || fail "node $i: the mount or python failed: $(cat "$T/mount.$i.log")"
done
read -r gets bytes <<<"$(registry_gets "$REGISTRY_LOG" "$layer")"
log "the registry served the $size-byte layer $gets times, $bytes bytes ($((bytes * 100 / size))%)"
((bytes * 100 <= size * 105)) || fail "the registry served $bytes bytes of a $size-byte layer"
claims=0 waits=0
for ((i = 1; i <= N; i++)); do
    claims=$((claims + $(counter "${D[i]}" claims)))
    waits=$((waits + $(counter "${D[i]}" claim_waits)))
done
assert_eq 1 "$claims" "claims granted in the cluster"
((waits >= 1)) || fail "no node waited on the claim"
for ((i = 1; i <= N; i++)); do
    "$AFSP_BIN" --data "${D[i]}" umount "$T/m$i"
    kill_bg "${PID[i]}"
done
kill_bg "$REGISTRY_PID"

log "again, with the registry capped at 80 Mbit/s and the claimant killed mid-download"
sub=10.231.$((RANDOM % 250))
netns_hub "afsphub$$" "$sub.1"
netns_join "afsphub$$" "afspreg$$" "$sub.2" 80mbit
start_registry --netns "afspreg$$" "$sub.2"
INSECURE=$REGISTRY
push_image "$T/oci" py "$REGISTRY/debian:py"
read -r layer <<<"$(layer_digests "$REGISTRY/debian:py")"
layer_gets_at_least() { # N: the registry's log shows at least N GETs of the layer
    local g
    read -r g _ <<<"$(registry_gets "$REGISTRY_LOG" "$layer")"
    ((g >= $1))
}
# The claimant must not be the claim's granter (the node closest to the layer's key, one in
# ten): killed, that one takes the claim's record with it, and whichever node asks the next
# granter first is granted the claim, not the standby (docs/swarm.md, "Races, partitions,
# liars": one download more). That case is left out here: a fresh cluster (new node IDs) is
# made until the claimant is not the granter.
for try in 1 2 3 4; do
    cluster 2
    storm "$REGISTRY/debian:py"
    wait_until 60 find_claimant "${LOGN[@]}"
    claimant=$CLAIMANT
    (($(dht "${D[claimant]}" claims_held) == 0)) && break
    log "the claimant, node $claimant, is also the claim's granter: a fresh cluster (try $try)"
    ((try < 4)) || fail "the claimant was the granter 4 times in a row"
    for ((i = 1; i <= N; i++)); do kill_bg "${PID[i]}"; done
    storm_wait
    for ((i = 1; i <= N; i++)); do
        _unmount_at_exit "$T/m$i"
        rm -rf "${D[i]}"
    done
    # the cut download of this try (its one GET of the layer) logged before the next is counted
    wait_until 30 layer_gets_at_least "$try"
    skip2=$(wc -l <"$REGISTRY_LOG")
done
relayed_third() { (($(counter "${D[claimant]}" relayed_bytes) * 3 >= size)); }
wait_until 60 relayed_third
kill -KILL "${PID[claimant]}"
log "killed node $claimant, the claimant, once a third of the layer was relayed to its standby"
storm_wait
for ((i = 1; i <= N; i++)); do
    ((i == claimant)) && continue
    [ "$(cat "$T/rc.$i" 2>/dev/null)" = 0 ] || fail "node $i: the mount or python failed: $(cat "$T/mount.$i.log")"
done
read -r gets bytes <<<"$(registry_gets "$REGISTRY_LOG" "$layer" "${skip2:-0}")"
log "the registry served the layer $gets times, $bytes bytes ($((bytes * 100 / size))%)"
# the claimant's cut download, and the rest by the standby that took over
((gets <= 2)) || fail "the registry served the layer $gets times"
((bytes * 100 <= size * 105)) || fail "the registry served $bytes bytes of a $size-byte layer"
resumed=0
for ((i = 1; i <= N; i++)); do
    ((i == claimant)) && continue
    grep -q "event=relay_resume" "${LOGN[i]}" && resumed=$((resumed + 1))
done
assert_eq 1 "$resumed" "nodes that resumed the download by a Range request"
takeovers=0
for ((i = 1; i <= N; i++)); do
    ((i == claimant)) && continue
    takeovers=$((takeovers + $(counter "${D[i]}" claim_takeovers)))
done
assert_eq 1 "$takeovers" "takeovers of the claim"
for ((i = 1; i <= N; i++)); do
    ((i == claimant)) && continue
    "$AFSP_BIN" --data "${D[i]}" umount "$T/m$i"
done

log "again, 10 nodes pull the image whole at once from the capped registry"
for ((i = 1; i <= N; i++)); do ((i == claimant)) || kill_bg "${PID[i]}"; done
skip=$(wc -l <"$REGISTRY_LOG")
cluster 3
for ((i = 1; i <= N; i++)); do
    (
        "$AFSP_BIN" --data "${D[i]}" pull --insecure-registry "$INSECURE" "$REGISTRY/debian:py" \
            >"$T/pull.$i.log" 2>&1
        echo $? >"$T/prc.$i"
    ) &
    PULLS[i]=$!
done
for ((i = 1; i <= N; i++)); do wait "${PULLS[i]}" || true; done
relayed=0 most=0 chained=0
for ((i = 1; i <= N; i++)); do
    [ "$(cat "$T/prc.$i")" = 0 ] || fail "node $i: the pull failed: $(cat "$T/pull.$i.log")"
    complete=$("$AFSP_BIN" --data "${D[i]}" layers --json |
        "$PY" -c 'import json,sys; print(sum(1 for l in json.load(sys.stdin) if l["complete"] and l["digest"] == sys.argv[1]))' "$layer")
    assert_eq 1 "$complete" "node $i: the layer complete"
    r=$(counter "${D[i]}" relayed_bytes) c=$(counter "${D[i]}" claim_relays)
    relayed=$((relayed + r)) chained=$((chained + c))
    ((r > most)) && most=$r
done
read -r gets bytes <<<"$(registry_gets "$REGISTRY_LOG" "$layer" "$skip")"
log "the registry served the layer $gets times, $bytes bytes; $relayed bytes were relayed from downloads as they ran, at most $most by one node; $chained pulls read another reader's download"
assert_eq 1 "$gets" "GETs of the layer"
((bytes * 100 <= size * 105)) || fail "the registry served $bytes bytes of a $size-byte layer"
# the standby read the claimant's download as it ran, and each of the others the download of
# the one that asked before it (the relay chain: docs/swarm.md): each uplink carried the layer
# about once, however many read it, and most of it went from download to download
((chained >= N - 3)) || fail "only $chained pulls read another reader's download"
((most * 100 <= size * 105)) || fail "one node relayed $most bytes of a $size-byte layer"
((relayed * 2 >= (N - 1) * size)) ||
    fail "$relayed bytes were relayed from downloads as they ran, of a $size-byte layer, to $((N - 1)) nodes"
