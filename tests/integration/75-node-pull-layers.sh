#!/bin/bash
# A whole pull asks its peers for several layers at once, and what they lack comes from the
# registry after: B pulls fx:2 (fx:1's four layers and one more) while A holds fx:1. The
# registry serves B the new layer only, once; the shared four come from A; B's tree equals
# `umoci unpack` of fx:2, and B's layers equal A's byte for byte.
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
all_verified() { read -r nver nlayers <<<"$(verified "$B")"; ((nver == nlayers)); }
wait_until 60 all_verified
"$AFSP_BIN" --data "$B" inspect extract "$REGISTRY/fx:2" "$T/exB"
umoci_unpack_ref "$REGISTRY/fx:2" "$T/want"
assert_tree_eq "$T/want" "$T/exB"
log "ok"
