#!/bin/bash
# Start traces (docs/mount.md): A holds the python image (the registry stopped). B, holding
# nothing, mounts it and runs python3: its mount records the chunks the start read and keeps the
# trace, which B's node announces. C, holding nothing and seeded with A only, finds the trace
# through the DHT, fetches it from B and, mounting, fetches its chunks ahead: the start reads
# the same, and C fetches no more chunks than B did. D mounts with --no-trace: no trace asked,
# none fetched ahead.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
python_image_layout "$T/oci"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py" >/dev/null
ref=$REGISTRY/debian@$PUSHED_DIGEST

NODE_ARGS=(--verify-rate 0) # chunks come only when read or fetched ahead
pa=$(free_port)
start_node nodeA "$T/A" "$pa"
"$AFSP_BIN" --data "$T/A" pull "$ref" >/dev/null
kill_bg "$REGISTRY_PID"

script='import json, sqlite3; print(json.dumps({"ok": sqlite3.sqlite_version}))'
# cold NAME [mount options]: a new node seeded with A mounts the image, runs python3, unmounts
cold() {
    local name=$1 d=$T/$1
    shift
    start_node "node$name" "$d" "$(free_port)" "$pa"
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

log "D: --no-trace asks for no trace and fetches nothing ahead"
cold D --no-trace
assert_eq "$outb" "$OUT" "python3's output on D"
assert_eq 0 "$(counter "$T/D" traces_fetched)" "traces D fetched"
grep -q 'event=prefetch\|event=trace_recorded' "$T/mountD.log" && fail "D's mount used a trace"
log "ok: B recorded $nb chunks, C fetched $k of them ahead ($fc chunks in all, B $fb)"
