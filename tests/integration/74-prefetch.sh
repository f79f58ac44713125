#!/bin/bash
# Start traces (docs/mount.md): A holds the python image (the registry stopped). B, holding
# nothing, mounts it and runs python3: its mount records the chunks the start read and keeps the
# trace, which B's node announces. C, holding nothing and seeded with A only, finds the trace
# through the DHT, fetches it from B and, mounting, fetches its chunks ahead: the start reads
# the same, and C fetches no more chunks than B did. D mounts with --no-trace: no trace asked,
# none fetched ahead. Then D lies (afsp-forge puts a trace of its own making in its store, the
# honest holders of the true one stopped): E refuses a trace naming a chunk the layer lacks and
# records its own; F takes one naming every chunk of the layer and fetches no more than the
# layer.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
FORGE=$(dirname "$AFSP_BIN")/afsp-forge
python_image_layout "$T/oci"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py" >/dev/null
ref=$REGISTRY/debian@$PUSHED_DIGEST
manifest=$PUSHED_DIGEST

NODE_ARGS=(--verify-rate 0) # chunks come only when read or fetched ahead
pa=$(free_port)
start_node nodeA "$T/A" "$pa"
"$AFSP_BIN" --data "$T/A" pull "$ref" >/dev/null
kill_bg "$REGISTRY_PID"

script='import json, sqlite3; print(json.dumps({"ok": sqlite3.sqlite_version}))'
declare -A NPID
# cold NAME [mount options]: a new node seeded with A mounts the image, runs python3, unmounts
cold() {
    local name=$1 d=$T/$1
    shift
    start_node "node$name" "$d" "$(free_port)" "$pa"
    NPID[$name]=$BG_PID
    wait_until 15 dht_at_least "$d" contacts 1
    mount_image "$d" "$ref" "$T/mnt$name" "$@"
    OUT=$(chroot "$T/mnt$name" /usr/bin/python3 -c "$script" 2>&1) || fail "python3 on $name: $OUT"
    LOGF=$T/mount$name.log
    "$AFSP_BIN" --data "$d" umount "$T/mnt$name"
    cp "$(mount_log "$d" "$T/mnt$name")" "$LOGF"
}

log "B: the first cold start in the cluster records the trace"
cold B
outb=$OUT
grep -q 'event=trace_recorded' "$T/mountB.log" || fail "B's mount recorded no trace: $(tail -5 "$T/mountB.log")"
nb=$(sed -n 's/.*event=trace_recorded chunks=\([0-9]*\).*/\1/p' "$T/mountB.log")
((nb > 0)) || fail "B recorded an empty trace"
fb=$(counter "$T/B" chunks_fetched)
log "B read $fb chunks; its trace names $nb"

log "C: finds the trace through the DHT (seeded with A only), fetches its chunks ahead"
cold C
assert_eq "$outb" "$OUT" "python3's output on C"
assert_eq 1 "$(counter "$T/C" traces_fetched)" "traces C fetched from a peer"
assert_eq 0 "$(counter "$T/C" traces_refused)" "traces C refused"
pre=$(sed -n 's/.*event=prefetch chunks=\([0-9]*\) of=\([0-9]*\).*/\1 \2/p' "$T/mountC.log")
[ -n "$pre" ] || fail "C's mount fetched nothing ahead: $(tail -5 "$T/mountC.log")"
read -r k n <<<"$pre"
assert_eq "$nb" "$n" "entries of the trace C replayed"
((k > 0)) || fail "C's prefetch asked for no chunk"
fc=$(counter "$T/C" chunks_fetched)
((fc <= fb + 4)) || fail "C fetched $fc chunks, B $fb: the prefetch asked for more than the start reads"
grep -q 'event=trace_recorded' "$T/mountC.log" && fail "C recorded a trace although the cluster had one"

# fetched_once DATA: every chunk the node fetched is one it holds: none was fetched twice (that
# keeps chunks_fetched above the chunks present for good)
fetched_once() {
    local present
    read -r present _ <<<"$(chunks "$1")"
    ((present == $(counter "$1" chunks_fetched)))
}
wait_until 20 fetched_once "$T/C"

log "G: the node answers a fetch before its chunks are synced and marked; on a slow disk the"
log "   mount takes them at the answer (readers that waited on the prefetch's requests too)"
# build/iofault.so makes each of G's syncs take 100 ms; a sanitizer's runtime cannot have it
# preloaded (70-store-faults), so there the check runs at the disk's own speed
shim=()
[ -f "$(dirname "$AFSP_BIN")/iofault.so" ] || fail "$(dirname "$AFSP_BIN")/iofault.so is missing: make all"
grep -qa -e __asan_init -e __tsan_init "$AFSP_BIN" ||
    shim=(env LD_PRELOAD="$(dirname "$AFSP_BIN")/iofault.so" AFSP_FAULT_DIR="$T/G" AFSP_FAULT_SYNC_SLEEP_MS=100)
mkdir -p "$T/G"
NODE_WRAP=(${shim[@]+"${shim[@]}"})
cold G
NODE_WRAP=()
assert_eq "$outb" "$OUT" "python3's output on G"
assert_eq 1 "$(counter "$T/G" traces_fetched)" "traces G fetched from a peer"
wait_until 30 fetched_once "$T/G"
kill_bg "${NPID[G]}"

log "D: --no-trace asks for no trace and fetches nothing ahead"
cold D --no-trace
assert_eq "$outb" "$OUT" "python3's output on D"
assert_eq 0 "$(counter "$T/D" traces_fetched)" "traces D fetched"
grep -q 'event=prefetch\|event=trace_recorded' "$T/mountD.log" && fail "D's mount used a trace"

# lie ENTRIES...: D (stopped) keeps a trace of these entries and starts again; it alone serves
# a trace (the others that hold one are stopped)
lie() {
    kill_bg "${NPID[D]}"
    "$FORGE" trace "$T/D" "$manifest" "$@" >/dev/null || fail "afsp-forge trace failed"
    local port
    port=$(free_port)
    start_node nodeD2 "$T/D" "$port" "$pa"
    NPID[D]=$BG_PID
    wait_until 20 d_provides "$port"
}
# d_provides PORT: the DHT names D, at PORT, a provider of the image's trace
trace_key=sha256:$("$PY" -c 'import hashlib, sys
print(hashlib.sha256(b"afsp start trace v1\0" + bytes.fromhex(sys.argv[1].split(":")[1])).hexdigest())' "$manifest")
d_provides() {
    "$AFSP_BIN" --data "$T/A" providers --json "$trace_key" | "$PY" -c 'import json, sys
a = json.load(sys.stdin)
sys.exit(0 if any(p["address"].endswith(":" + sys.argv[1]) for p in a["providers"]) else 1)' "$1"
}
kill_bg "${NPID[B]}"
kill_bg "${NPID[C]}"
nchunks=$("$AFSP_BIN" --data "$T/A" layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["chunks"])')

log "E: a trace that names a chunk past the layer's end is refused; E records its own"
lie 0:3 0:$((nchunks + 5)) 0:7
cold E
assert_eq "$outb" "$OUT" "python3's output on E"
assert_eq 1 "$(counter "$T/E" traces_refused)" "traces E refused"
assert_eq 0 "$(counter "$T/E" traces_fetched)" "traces E took"
grep -q 'event=prefetch' "$T/mountE.log" && fail "E fetched a refused trace's chunks ahead"
grep -q 'event=trace_recorded' "$T/mountE.log" || fail "E recorded no trace of its own"
kill_bg "${NPID[E]}"

log "F: a trace naming every chunk of the layer fetches no more than the layer"
lie $(seq -f '0:%g' 0 $((nchunks - 1)))
cold F
assert_eq "$outb" "$OUT" "python3's output on F"
assert_eq 1 "$(counter "$T/F" traces_fetched)" "traces F took"
ff=$(counter "$T/F" chunks_fetched)
((ff <= nchunks)) || fail "F fetched $ff chunks of a $nchunks-chunk layer"
log "ok: B recorded $nb chunks, C fetched $k of them ahead ($fc chunks in all, B $fb); E refused a trace past the layer; F fetched $ff of $nchunks chunks for a trace of them all"
