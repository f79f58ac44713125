#!/bin/bash
# A multi-layer image with every kind of tar entry (fixture), pushed gzip, zstd and uncompressed,
# pulled by tag and by digest: every byte and attribute read back through the layer indexes
# equals `umoci unpack` of the same image; listings say what was pulled.
. "$(dirname "$0")/lib.sh"

start_registry
build_fixture_image "$TEST_TMPDIR/oci" fx
umoci_unpack_ref_ok=0
D=$TEST_TMPDIR/data
afsp() { "$AFSP_BIN" --data "$D" "$@"; }

for c in gzip zstd none; do
    push_image "$TEST_TMPDIR/oci" fx "$REGISTRY/fx:$c" --compress "$c"
    digest=$PUSHED_DIGEST
    if ((!umoci_unpack_ref_ok)); then
        umoci_unpack_ref "$REGISTRY/fx:gzip" "$TEST_TMPDIR/oracle"
        umoci_unpack_ref_ok=1
    fi
    out=$(afsp pull "$REGISTRY/fx:$c")
    assert_eq "$REGISTRY/fx:$c $digest" "$out" "pull prints the manifest digest"
    afsp inspect extract "$REGISTRY/fx:$c" "$TEST_TMPDIR/ex-$c"
    assert_tree_eq "$TEST_TMPDIR/oracle" "$TEST_TMPDIR/ex-$c"
    log "$c: index matches umoci unpack"
done

# every layer listed, complete, with the media type the registry gave
afsp layers --json >"$TEST_TMPDIR/layers.json"
for c in gzip zstd none; do
    for l in $(layer_digests "$REGISTRY/fx:$c"); do
        "$PY" - "$l" "$c" "$TEST_TMPDIR/layers.json" <<'PYEOF' || fail "layer $l ($c) listed wrong"
import json, sys
d, c = sys.argv[1], sys.argv[2]
want = {"gzip": "gzip", "zstd": "zstd", "none": "tar"}[c]
ls = [x for x in json.load(open(sys.argv[3])) if x["digest"] == d]
assert len(ls) == 1, "not listed"
x = ls[0]
assert x["mediaType"].endswith(want), x["mediaType"]
assert x["complete"] and x["chunks"] == x["chunksPresent"] >= 1, x
assert x["uncompressedSize"] >= 1024 and x["storedBytes"] > x["size"], x
PYEOF
    done
done
afsp images --json >"$TEST_TMPDIR/images.json"
"$PY" - "$REGISTRY" "$TEST_TMPDIR/images.json" <<'PYEOF' || fail "images --json wrong"
import json, sys
reg = sys.argv[1]
im = {x["reference"]: x for x in json.load(open(sys.argv[2]))}
for c in ("gzip", "zstd", "none"):
    x = im[f"{reg}/fx:{c}"]
    assert x["platform"].startswith("linux/"), x
    assert len(x["layers"]) == 4 and x["layersPresent"] == 4, x
    assert x["manifestDigest"].startswith("sha256:") and x["size"] > 0, x
PYEOF

# by digest: nothing is downloaded again (every layer is present)
reglog=$(ls "$TEST_TMPDIR"/logs/registry.*.log)
layer_gets() { grep -cF "$(layer_digests "$REGISTRY/fx:none" | sed 's|^|"GET /v2/fx/blobs/|')" $reglog || true; }
before=$(layer_gets)
afsp pull "$REGISTRY/fx@$digest" >/dev/null
after=$(layer_gets)
assert_eq "$before" "$after" "a pull of present layers downloads no layer"
afsp inspect extract "$REGISTRY/fx@$digest" "$TEST_TMPDIR/ex-digest"
assert_tree_eq "$TEST_TMPDIR/oracle" "$TEST_TMPDIR/ex-digest"

# a digest that does not exist: one line, nothing stored
expect_fail "$AFSP_BIN" --data "$D" pull "$REGISTRY/fx@sha256:$(printf '0%.0s' {1..64})"
assert_contains "$EXPECT_FAIL_OUTPUT" "not found"
assert_eq 1 "$(printf '%s\n' "$EXPECT_FAIL_OUTPUT" | wc -l)" "one line"

# With the registry gone: a pull by digest of an image whose blobs are all stored still works
# (manifests and configs are content-addressed and kept), a pull by tag cannot (tags must be
# resolved) and says so in one line; the layers stay as they were.
summary() { afsp layers --json | "$PY" -c 'import json,sys; print(sorted((x["digest"], x["complete"], x["storedBytes"]) for x in json.load(sys.stdin)))'; }
before=$(summary)
kill_bg "$REGISTRY_PID"
out=$(afsp pull "$REGISTRY/fx@$digest")
assert_eq "$REGISTRY/fx@$digest $digest" "$out" "offline pull by digest"
expect_fail "$AFSP_BIN" --data "$D" pull "$REGISTRY/fx:gzip"
assert_contains "$EXPECT_FAIL_OUTPUT" "afsp: cannot pull $REGISTRY/fx:gzip:"
assert_eq 1 "$(printf '%s\n' "$EXPECT_FAIL_OUTPUT" | wc -l)" "one line"
assert_eq "$before" "$(summary)" "layers unchanged"
