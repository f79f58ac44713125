#!/bin/bash
# The cache limit: an image that can never fit fails fast (before any layer is downloaded);
# over the limit the least recently used layers go first; prune frees the share asked.
. "$(dirname "$0")/lib.sh"

start_registry
D=$TEST_TMPDIR/data
afsp() { "$AFSP_BIN" --data "$D" "$@"; }
REGISTRY_LOG=$(ls "$TEST_TMPDIR"/logs/registry.*.log)

# three single-layer images of about 1.1 MB each (busybox plus a distinct file)
for n in a b c; do
    build_busybox_image "$TEST_TMPDIR/oci" "$n" --file "/which=$n"
    push_image "$TEST_TMPDIR/oci" "$n" "$REGISTRY/$n:1"
done
size=$(stat -c %s /bin/busybox)

# fail fast: a limit below one image's size; nothing downloaded, nothing stored
layer=$(layer_digests "$REGISTRY/a:1")
layer_gets() { grep -c "\"GET /v2/a/blobs/$layer" "$REGISTRY_LOG" || true; }
before=$(layer_gets)
expect_fail afsp --cache-max-bytes $((size / 2)) pull "$REGISTRY/a:1"
assert_contains "$EXPECT_FAIL_OUTPUT" "afsp: cannot pull $REGISTRY/a:1: image needs"
assert_contains "$EXPECT_FAIL_OUTPUT" "the cache limit is"
assert_eq "$before" "$(layer_gets)" "no layer was downloaded for an image that cannot fit"
assert_eq "[]" "$(afsp layers --json | tr -d ' \n')"

# a limit with room for two images: pulling a third evicts the least recently used
afsp pull "$REGISTRY/a:1" >/dev/null
stored=$(afsp layers --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["storedBytes"])')
limit=$((stored * 5 / 2))
lim() { afsp --cache-max-bytes "$limit" "$@"; }
lim pull "$REGISTRY/b:1" >/dev/null
lim pull "$REGISTRY/a:1" >/dev/null # a is used again: b is now the oldest
lim pull "$REGISTRY/c:1" >/dev/null
imgs=$(lim images)
assert_contains "$imgs" "$REGISTRY/a:1"
present() { lim images --json | "$PY" -c "import json,sys; print({x['reference'].split('/')[-1].split(':')[0]: x['layersPresent'] for x in json.load(sys.stdin)}['$1'])"; }
assert_eq 1 "$(present a)" "a (recently used) kept"
assert_eq 0 "$(present b)" "b (least recently used) evicted"
assert_eq 1 "$(present c)" "c pulled"
used=$(lim layers --json | "$PY" -c "import json,sys; print(sum(x['storedBytes'] for x in json.load(sys.stdin)))")
((used <= limit)) || fail "stored bytes $used exceed the limit $limit"
# every evicted layer's file is gone: one blob file per listed layer
assert_eq "$(lim layers --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
    "$(find "$D/blobs/sha256" -type f | wc -l)" "blob files match layer records"
# b comes back on demand
lim pull "$REGISTRY/b:1" >/dev/null
assert_eq 1 "$(present b)" "b pulled again"

# prune: 40% of two near-equal layers frees one, the least recently used (b: c was used after
# it); then 100% empties the store
lim pull "$REGISTRY/c:1" >/dev/null
out=$(lim prune --percent 40)
assert_contains "$out" "in 1 layer(s)" "40% of two layers is one layer"
assert_eq 0 "$(present b)" "prune took the least recently used layer"
assert_eq 1 "$(present c)" "prune kept the most recently used layer"
out=$(lim prune --percent 100)
assert_contains "$out" "0 B stored"
assert_eq "[]" "$(lim layers --json | tr -d ' \n')"
assert_eq 0 "$(find "$D/blobs/sha256" -type f | wc -l)" "no blob file after prune 100"
# images are still listed, with no layer present, and pull brings them back
assert_eq 0 "$(present c)"
lim pull "$REGISTRY/c:1" >/dev/null
assert_eq 1 "$(present c)"

# a manifest whose layer sizes add up past 2^64 (two of 8.68e18 bytes, whose allowances wrap to
# 1 MiB; the registry does not check sizes): the pull must fail fast as too big, not reserve
# the wrapped sum and download
manifest_raw "$REGISTRY/a:1" | "$PY" -c '
import json, sys
m = json.load(sys.stdin)
big = dict(m["layers"][0], size=8680820740569632527)
m["layers"] = [big, dict(big)]
sys.stdout.write(json.dumps(m))' >"$TEST_TMPDIR/huge.json"
mt=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("mediaType", "application/vnd.oci.image.manifest.v1+json"))' "$TEST_TMPDIR/huge.json")
curl -sf --max-time 30 -X PUT -H "Content-Type: $mt" --data-binary "@$TEST_TMPDIR/huge.json" \
    "http://$REGISTRY/v2/a/manifests/huge" >/dev/null || fail "the registry refused the manifest"
before=$(layer_gets)
expect_fail lim pull "$REGISTRY/a:huge"
assert_contains "$EXPECT_FAIL_OUTPUT" "image needs 18446.7 PB"
assert_eq "$before" "$(layer_gets)" "no layer was downloaded for an image past 2^64 bytes"
