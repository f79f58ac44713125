#!/bin/bash
# The DHT: six nodes, each seeded only with the one before. The first pulls an image (a 256 MB
# random file and a small one); the sixth, which knows only the fifth, finds the first through
# the DHT and mounts the image with the registry stopped. Two providers, and one is killed with
# kill -9 halfway through the sixth node's read of the 256 MB file: the read completes with the
# right checksum. Again with a provider that prunes the layer halfway: same. A node without the
# cluster key cannot look anything up.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
start_registry
mkdir -p "$T/img"
head -c $((256 << 20)) /dev/urandom >"$T/img/big"
echo "hello from the first node" >"$T/img/small"
want=$(sha256sum "$T/img/big" | cut -d' ' -f1)
build_oci_of_dir "$T/img" "$T/oci" r
push_image "$T/oci" r "$REGISTRY/dht:1" --compress none >/dev/null
digest=$PUSHED_DIGEST
ref=$REGISTRY/dht@$digest
rm -rf "$T/oci"

declare -a P D PID
for i in 1 2 3 4 5 6; do
    P[i]=$(free_port)
    D[i]=$T/N$i
    if ((i == 1)); then start_node "node$i" "${D[i]}" "${P[i]}"; else
        start_node "node$i" "${D[i]}" "${P[i]}" "${P[i - 1]}"; fi
    PID[i]=$BG_PID
done
"$AFSP_BIN" --data "${D[1]}" pull "$REGISTRY/dht:1" >/dev/null
kill_bg "$REGISTRY_PID"

log "N1 announces its layer and manifest: records land on other nodes"
records() {
    local i n=0
    for i in 2 3 4 5 6; do n=$((n + $(dht "${D[i]}" records))); done
    ((n >= 2))
}
wait_until 20 records
((0 + $(dht "${D[1]}" providing) == 2)) || fail "N1 provides $(dht "${D[1]}" providing) keys, not 2"
((0 + $(dht "${D[6]}" contacts) >= 4)) || fail "N6 knows $(dht "${D[6]}" contacts) nodes: joining did not fill its table"

log "N6 (seeded with N5 only) mounts the image by digest; N1 serves it"
M=$T/mnt6
mount_image "${D[6]}" "$ref" "$M"
assert_eq "hello from the first node" "$(cat "$M/small")" "a file read through N6's mount"
((0 + $(counter "${D[1]}" chunks_served) >= 1)) || fail "N1 served no chunk"
((0 + $(dht "${D[6]}" provider_lookups) >= 1)) || fail "N6 looked up no provider"
id1=$("$AFSP_BIN" --data "${D[1]}" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["id"])')
"$AFSP_BIN" --data "${D[6]}" peers --json | grep -q "$id1" || fail "N6 has no link to N1"

# Reads FILE: the first HALF bytes, then says so on fifo $2.half and waits for a line on
# $2.go, then the rest; prints the SHA-256 of the whole.
half_reader() {
    local file=$1 sig=$2
    mkfifo "$sig.half" "$sig.go"
    timeout 300 "$PY" - "$file" "$sig" <<'PYEOF' &
import hashlib, sys
path, sig = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
with open(path, "rb", buffering=0) as f:
    n = 0
    while n < 128 << 20:
        b = f.read(1 << 20)
        h.update(b)
        n += len(b)
    open(sig + ".half", "w").write("half\n")
    open(sig + ".go").read()
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        h.update(b)
print(h.hexdigest())
PYEOF
    READER=$!
}

log "N3 pulls the image too (two providers); N1 is killed halfway through N6's read"
"$AFSP_BIN" --data "${D[3]}" pull "$ref" >/dev/null
wait_until 20 eval '(($(dht "${D[3]}" providing) == 2))'
served1=$(counter "${D[1]}" chunks_served)
half_reader "$M/big" "$T/r1" >"$T/r1.out"
read -r _ <"$T/r1.half"
(($(counter "${D[1]}" chunks_served) > served1)) || fail "N1 served none of the first half"
kill -9 "${PID[1]}"
echo go >"$T/r1.go"
wait "$READER" || fail "the read through N6's mount failed after N1 was killed"
assert_eq "$want" "$(cat "$T/r1.out")" "checksum of the 256 MB file read through N6"
assert_eq 0 "$(counter "${D[6]}" bad_chunks)" "bad chunks on N6"
"$AFSP_BIN" --data "${D[6]}" umount "$M"

log "N1 restarts (same ID, re-announces); N3 prunes the layer halfway through N4's read"
start_node node1 "${D[1]}" "${P[1]}" "${P[2]}"
wait_until 20 eval '(($(dht "${D[1]}" providing) == 2))'
M4=$T/mnt4
mount_image "${D[4]}" "$ref" "$M4"
half_reader "$M4/big" "$T/r2" >"$T/r2.out"
read -r _ <"$T/r2.half"
((0 + $(counter "${D[3]}" chunks_served) >= 1)) || fail "N3 served none of the first half"
"$AFSP_BIN" --data "${D[3]}" prune --percent 100 >/dev/null
# withdrawn at once (afsp prune tells the node): N3 announces its manifest only
assert_eq 1 "$(dht "${D[3]}" providing)" "keys N3 provides after the prune"
((0 + $(chunks "${D[3]}" | cut -d' ' -f1) == 0)) || fail "N3 still holds chunks after the prune"
echo go >"$T/r2.go"
wait "$READER" || fail "the read through N4's mount failed after N3 pruned"
assert_eq "$want" "$(cat "$T/r2.out")" "checksum of the 256 MB file read through N4"
"$AFSP_BIN" --data "${D[4]}" umount "$M4"

log "a node without the cluster key learns nothing"
X=$T/X px=$(free_port)
"$AFSP_BIN" genkey >"$T/other.key"
start_bg nodeX "$AFSP_BIN" -v --data "$X" node --listen "127.0.0.1:$px" \
    --cluster-key-file "$T/other.key" --seed "127.0.0.1:${P[2]}"
wait_port "$px" 15 "$BG_PID"
failed() { (($(counter "${D[2]}" handshake_failures) >= 1)); }
wait_until 15 failed
assert_eq 0 "$(dht "$X" contacts)" "DHT contacts of a node without the key"
expect_fail "$AFSP_BIN" --data "$X" pull "$ref"
assert_eq 0 "$(counter "$X" chunks_fetched)" "chunks a node without the key got"
