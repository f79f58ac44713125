#!/bin/bash
# The DHT: six nodes, each seeded only with the one before. The first pulls an image (a 256 MB
# random file and a small one); the sixth, which knows only the fifth, finds the first through
# the DHT and mounts the image with the registry stopped. Two providers, and one is killed with
# kill -9 halfway through the sixth node's read of the 256 MB file: the read completes with the
# right checksum. Again with a provider that prunes the layer halfway: same; and with a provider
# that stops answering (SIGSTOP) halfway: its requests are hedged to the other provider. A node
# without the cluster key cannot look anything up.
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

log "afsp providers on N6 names N1 for the layer and the manifest, and nothing for a digest no one holds"
id1=$("$AFSP_BIN" --data "${D[1]}" stats --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["stats"]["id"])')
layer=$("$AFSP_BIN" --data "${D[1]}" layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"])')
for dg in "$layer" "$digest"; do
    "$AFSP_BIN" --data "${D[6]}" providers --json "$dg" >"$T/prov.json"
    "$PY" - "$T/prov.json" "$id1" "${P[1]}" <<'PYEOF' || fail "afsp providers $dg: $(cat "$T/prov.json")"
import json, sys
a = json.load(open(sys.argv[1]))
assert [p["id"] for p in a["providers"]] == [sys.argv[2]], a
assert a["providers"][0]["address"] == "127.0.0.1:" + sys.argv[3], a
assert a["lookup"]["closest"] >= 4 and a["lookup"]["messages"] >= 1, a
PYEOF
done
none=sha256:$(printf '%064d' 0)
"$AFSP_BIN" --data "${D[6]}" providers --json "$none" | "$PY" -c 'import json,sys; assert json.load(sys.stdin)["providers"] == []' ||
    fail "providers of a digest no one holds"
status() { "$@" >/dev/null 2>&1 && echo 0 || echo $?; }
assert_eq 2 "$(status "$AFSP_BIN" --data "${D[6]}" providers sha256:nothex)" "providers with a bad digest"
assert_eq 2 "$(status "$AFSP_BIN" --data "${D[6]}" providers)" "providers without a digest"
assert_eq 2 "$(status "$AFSP_BIN" --data "$T/nonode" node --idle-timeout soon)" "node --idle-timeout soon"
expect_fail "$AFSP_BIN" --data "$T/nonode" providers "$none"
grep -q "no node runs" <<<"$EXPECT_FAIL_OUTPUT" || fail "providers without a node: $EXPECT_FAIL_OUTPUT"

log "N6 (seeded with N5 only) mounts the image by digest; N1 serves it"
M=$T/mnt6
mount_image "${D[6]}" "$ref" "$M"
assert_eq "hello from the first node" "$(cat "$M/small")" "a file read through N6's mount"
((0 + $(counter "${D[1]}" chunks_served) >= 1)) || fail "N1 served no chunk"
((0 + $(dht "${D[6]}" provider_lookups) >= 1)) || fail "N6 looked up no provider"
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
PID[1]=$BG_PID
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

log "N4 pulls the image (N1 and N4 provide it); N1 stops (SIGSTOP) halfway through N2's read"
"$AFSP_BIN" --data "${D[4]}" pull "$ref" >/dev/null
# the layer, the manifest, and the image's start trace (its mount above recorded or fetched it)
wait_until 20 eval '(($(dht "${D[4]}" providing) == 3))'
M2=$T/mnt2
mount_image "${D[2]}" "$ref" "$M2"
served1=$(counter "${D[1]}" chunks_served)
half_reader "$M2/big" "$T/r3" >"$T/r3.out"
read -r _ <"$T/r3.half"
(($(counter "${D[1]}" chunks_served) > served1)) || fail "N1 served none of the first half"
kill -STOP "${PID[1]}"
on_exit "kill -CONT ${PID[1]} 2>/dev/null || true"
echo go >"$T/r3.go"
wait "$READER" || fail "the read through N2's mount failed while N1 was stopped"
kill -CONT "${PID[1]}"
log "N2: $(counter "${D[2]}" hedges) requests hedged, $(counter "${D[2]}" hedges_won) won, $(counter "${D[2]}" stalls) stalls"
assert_eq "$want" "$(cat "$T/r3.out")" "checksum of the 256 MB file read through N2"
# the requests N1 left unanswered went to N4 as well, and N4's answers were taken
((0 + $(counter "${D[2]}" hedges_won) >= 1)) || fail "N2 hedged no request to N4 (hedges $(counter "${D[2]}" hedges))"
# and none of them waited for the 5 s stall timeout
assert_eq 0 "$(counter "${D[2]}" stalls)" "requests of N2 that stalled"
"$AFSP_BIN" --data "${D[2]}" umount "$M2"

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

log "a node with --idle-timeout 1 closes the links its join opened, keeps its seed's, and still pulls"
Y=$T/Y py=$(free_port)
start_bg nodeY "$AFSP_BIN" -v --data "$Y" node --listen "127.0.0.1:$py" --idle-timeout 1 \
    --cluster-key-file "$TEST_TMPDIR/cluster.key" --seed "127.0.0.1:${P[2]}"
wait_port "$py" 15 "$BG_PID"
idle_closed() { (($(counter "$Y" links_idle_closed) >= 1)); }
wait_until 20 idle_closed
one_peer() { [ "$(peer_count "$Y")" = 1 ]; }
wait_until 20 one_peer
((0 + $(dht "$Y" contacts) >= 4)) || fail "Y's routing table lost its contacts with the links"
"$AFSP_BIN" --data "$Y" pull "$ref" >/dev/null
assert_eq 0 "$(counter "$Y" registry_fetches)" "registry fetches of Y (the registry is stopped)"
