#!/bin/bash
# A whole pull asks its peers for several layers at once, and what they lack comes from the
# registry after: B pulls fx:2 (fx:1's four layers and one more) while A holds fx:1. The
# registry serves B the new layer only, once; the shared four come from A; B's tree equals
# `umoci unpack` of fx:2, and B's layers equal A's byte for byte. Then C pulls fx:3, fx:2 with
# its top layer named twice: every byte from its peers, each layer once, the same tree.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

T=$TEST_TMPDIR
start_registry
build_fixture_image "$T/oci" fx
push_image "$T/oci" fx "$REGISTRY/fx:1" --compress gzip
# fx:2: fx:1 with a fifth layer on top
cp -a "$T/oci" "$T/oci2"
b=$(_new_bundle_path)
_umoci unpack --image "$T/oci2:fx" "$b"
head -c 300000 /dev/urandom >"$b/rootfs/fifth.bin"
_umoci repack --image "$T/oci2:fx" "$b"
rm -rf "$b"
push_image "$T/oci2" fx "$REGISTRY/fx:2" --compress gzip
mapfile -t l1 < <(layer_digests "$REGISTRY/fx:1")
mapfile -t l2 < <(layer_digests "$REGISTRY/fx:2")
assert_eq 4 "${#l1[@]}" "fx:1's layers"
assert_eq 5 "${#l2[@]}" "fx:2's layers"
assert_eq "${l1[*]}" "${l2[*]:0:4}" "fx:2 begins with fx:1's layers"
new=${l2[4]}

pa=$(free_port) pb=$(free_port)
A=$T/A B=$T/B
start_node A "$A" "$pa"
start_node B "$B" "$pb" "$pa"
wait_until 15 has_peers "$B" 1
"$AFSP_BIN" --data "$A" pull "$REGISTRY/fx:1" >/dev/null
skip=$(wc -l <"$REGISTRY_LOG")

"$AFSP_BIN" --data "$B" pull "$REGISTRY/fx:2" >/dev/null
for l in "${l1[@]}"; do
    read -r gets _ <<<"$(registry_gets "$REGISTRY_LOG" "$l" "$skip")"
    assert_eq 0 "$gets" "registry GETs of shared layer $l by B"
    assert_file_eq "$A/blobs/sha256/${l#sha256:}" "$B/blobs/sha256/${l#sha256:}" "B's copy of $l"
done
read -r gets bytes <<<"$(registry_gets "$REGISTRY_LOG" "$new" "$skip")"
assert_eq 1 "$gets" "registry GETs of the new layer"
assert_eq "$(stat -c %s "$B/blobs/sha256/${new#sha256:}")" "$bytes" "bytes of the new layer from the registry"
read -r present total <<<"$(chunks "$B")"
assert_eq "$total" "$present" "B holds every chunk of its layers"
(($(counter "$B" chunks_fetched) > 0)) || fail "B fetched no chunk from A"

# the shared layers' indexes are A's until B builds its own from their blobs, in the background:
# until then B leaves out what only a built index may show (devices, setuid bits, capabilities)
wait_until 60 all_verified "$B"
"$AFSP_BIN" --data "$B" inspect extract "$REGISTRY/fx:2" "$T/exB"
umoci_unpack_ref "$REGISTRY/fx:2" "$T/want"
assert_tree_eq "$T/want" "$T/exB"

# fx:3: fx:2's manifest with its top layer (and its diff_id) twice
"$PY" - "$T/oci2" <<'PYEOF' || fail "cannot write fx:3"
import hashlib, json, os, sys
lo = sys.argv[1]
def blob(d): return os.path.join(lo, "blobs", *d.split(":", 1))
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(blob(d), "wb").write(data)
    return d, len(data)
idx = json.load(open(os.path.join(lo, "index.json")))
m = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == "fx"][0]
man = json.load(open(blob(m["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
cfg["rootfs"]["diff_ids"].append(cfg["rootfs"]["diff_ids"][-1])
man["config"]["digest"], man["config"]["size"] = put(json.dumps(cfg).encode())
man["layers"].append(man["layers"][-1])
d, n = put(json.dumps(man).encode())
idx["manifests"].append({"mediaType": m["mediaType"], "digest": d, "size": n,
                         "annotations": {"org.opencontainers.image.ref.name": "fx3"}})
json.dump(idx, open(os.path.join(lo, "index.json"), "w"))
PYEOF
"$PY" "$LIB_DIR/ocitool.py" push "$T/oci2" fx3 "$REGISTRY/fx:3" >/dev/null || fail "cannot push fx:3"
mapfile -t l3 < <(layer_digests "$REGISTRY/fx:3")
assert_eq 6 "${#l3[@]}" "fx:3's layers"
assert_eq "${l3[4]}" "${l3[5]}" "fx:3 names its top layer twice"
C=$T/C
start_node C "$C" "$(free_port)" "$pa" "$pb"
wait_until 15 has_peers "$C" 2
skip=$(wc -l <"$REGISTRY_LOG")
"$AFSP_BIN" --data "$C" pull "$REGISTRY/fx:3" >/dev/null
for l in "${l2[@]}"; do
    read -r gets _ <<<"$(registry_gets "$REGISTRY_LOG" "$l" "$skip")"
    assert_eq 0 "$gets" "registry GETs of layer $l by C"
done
assert_eq 5 "$("$AFSP_BIN" --data "$C" layers --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" "C's layers"
wait_until 60 all_verified "$C"
"$AFSP_BIN" --data "$C" inspect extract "$REGISTRY/fx:3" "$T/exC"
assert_tree_eq "$T/want" "$T/exC"
log "ok"
