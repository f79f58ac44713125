#!/bin/bash
# Swarming between real daemons on capped links: 8 nodes, each in a network namespace of its own
# on one bridge, what each sends capped at 100 Mbit/s (tc tbf), so that the links, not two cores,
# are the bottleneck. One node holds a 64 MB layer; the seven others pull it at once. Every pull
# completes with the right digest, and the holder sent less than the seven copies it would have
# without swarming (the others passed chunks among themselves). `make bench` times the same with
# a 256 MB layer against the ideal.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

T=$TEST_TMPDIR
N=8
MB=${SWARM_MB:-64}
netns_cluster $N 100mbit

# the layer: MB of random bytes in one file (gzip cannot shrink them)
mkdir -p "$T/rootfs"
head -c $((MB << 20)) /dev/urandom >"$T/rootfs/blob"
build_oci_of_dir "$T/rootfs" "$T/oci" r
rm -rf "$T/rootfs"
start_registry --host "$NET_HOST"
push_image "$T/oci" r "$REGISTRY/rand:1"
read -r layer <<<"$(layer_digests "$REGISTRY/rand:1")"
ref=$REGISTRY/rand@$PUSHED_DIGEST

# node 1 takes the image from the registry; the others will not reach it
"$AFSP_BIN" --data "${D[1]}" pull --insecure-registry "$REGISTRY" "$ref" >/dev/null
kill_bg "$REGISTRY_PID"

log "7 nodes pull the ${MB} MB layer from node 1 at once, every link capped at 100 Mbit/s"
t0=$(date +%s%N)
for ((i = 2; i <= N; i++)); do
    (timeout 300 "$AFSP_BIN" --data "${D[i]}" pull "$ref" >"$T/pull.$i.log" 2>&1) &
    W[i]=$!
done
failed=0
for ((i = 2; i <= N; i++)); do wait "${W[i]}" || failed=$((failed + 1)); done
t1=$(date +%s%N)
((failed == 0)) || fail "$failed pulls failed: $(cat "$T"/pull.*.log)"
for ((i = 2; i <= N; i++)); do
    got=$(sha256sum "${D[i]}/blobs/sha256/${layer#sha256:}" | cut -d' ' -f1)
    assert_eq "${layer#sha256:}" "$got" "node $i's copy of the layer"
    assert_eq 0 "$(counter "${D[i]}" registry_fetches)" "registry fetches on node $i"
done
size=$(stat -c %s "${D[2]}/blobs/sha256/${layer#sha256:}")
served=$(counter "${D[1]}" bytes_served)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
ideal=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 12.5e6 }')
log "all 7 done in $secs s (ideal: the layer over one link, $ideal s); node 1 sent $((served / size)).$(((served % size) * 10 / size)) copies"
((served < 6 * size)) || fail "node 1 sent $served bytes of a $size-byte layer to 7 pullers"
