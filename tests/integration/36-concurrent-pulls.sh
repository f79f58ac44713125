#!/bin/bash
# Several `afsp pull` processes on one store at once: all succeed, each layer is stored once,
# nothing is left in DATA/tmp, and the result reads back like `umoci unpack`.
. "$(dirname "$0")/lib.sh"

start_registry
build_fixture_image "$TEST_TMPDIR/oci" fx --files 500
push_image "$TEST_TMPDIR/oci" fx "$REGISTRY/fx:1"
build_busybox_image "$TEST_TMPDIR/oci" bb
push_image "$TEST_TMPDIR/oci" bb "$REGISTRY/bb:1"
D=$TEST_TMPDIR/data
afsp() { "$AFSP_BIN" --data "$D" "$@"; }

pids=()
for i in 1 2 3; do
    afsp pull "$REGISTRY/fx:1" >"$TEST_TMPDIR/out.$i" 2>&1 &
    pids+=($!)
done
afsp pull "$REGISTRY/bb:1" >"$TEST_TMPDIR/out.bb" 2>&1 &
pids+=($!)
for p in "${pids[@]}"; do
    wait "$p" || fail "a concurrent pull failed: $(cat "$TEST_TMPDIR"/out.*)"
done

n_layers=$(afsp layers --json | "$PY" -c 'import json,sys; l=json.load(sys.stdin); assert all(x["complete"] for x in l); print(len(l))')
n_unique=$( (layer_digests "$REGISTRY/fx:1"; layer_digests "$REGISTRY/bb:1") | sort -u | wc -l)
assert_eq "$n_unique" "$n_layers" "each layer stored once"
assert_eq "$n_layers" "$(find "$D/blobs/sha256" -type f | wc -l)" "one blob file per layer"
assert_eq 0 "$(find "$D/tmp" -type f | wc -l)" "no temporary file left"
usage=$(afsp layers --json | "$PY" -c 'import json,sys; print(sum(x["storedBytes"] for x in json.load(sys.stdin)))')
blobs=$(find "$D/blobs/sha256" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
((usage > blobs)) || fail "stored bytes ($usage) must count every blob ($blobs) plus its index"
umoci_unpack_ref "$REGISTRY/fx:1" "$TEST_TMPDIR/oracle"
afsp inspect extract "$REGISTRY/fx:1" "$TEST_TMPDIR/ex"
assert_tree_eq "$TEST_TMPDIR/oracle" "$TEST_TMPDIR/ex"
