# The integration fixtures themselves, with skopeo, umoci and curl only (no afsp): registries
# (open, htpasswd, token), the fixture and multi-platform images in every compression, the
# umoci oracle, and each bad-registry mode.
. "$(dirname "$0")/lib.sh"

T=$TEST_TMPDIR
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- an open registry, the fixture image in three compressions --------------------------------
start_registry
REG=$REGISTRY
build_fixture_image "$T/oci" fixture
build_busybox_image "$T/oci" busybox
push_image "$T/oci" fixture "$REG/fx/gzip:v1" --compress gzip
push_image "$T/oci" fixture "$REG/fx/zstd:v1" --compress zstd
push_image "$T/oci" fixture "$REG/fx/none:v1" --compress none
push_image "$T/oci" busybox "$REG/bb:v2s2" --format v2s2
push_image "$T/oci" busybox "$REG/bb:none-v2s2" --format v2s2 --compress none
push_image "$T/oci" busybox "$REG/bb:latest"
# skopeo's zstd works for a layer the registry has in no other compression (see push_image)
build_busybox_image "$T/oci" busybox-z --file /z=zstd
push_image "$T/oci" busybox-z "$REG/bb:skopeo-zstd" --via skopeo --compress zstd
BB_LAYER=$(layer_digests "$REG/bb:latest" | head -1)
assert_eq 4 "$(layer_digests "$REG/fx/gzip:v1" | wc -l)" "fixture image layers"

log "layer blobs really are gzip / zstd / plain tar"
magic() { # REPO: hex of the first 4 bytes of the second layer, and of bytes 257..261
    local d
    d=$(layer_digests "$REG/$1:v1" | sed -n 2p)
    curl -sf -r 0-511 "http://$REG/v2/$1/blobs/$d" -o "$T/head"
    printf '%s %s' "$(od -An -tx1 -N4 "$T/head" | tr -d ' ')" "$(dd if="$T/head" bs=1 skip=257 count=5 2>/dev/null)"
}
assert_contains "$(magic fx/gzip)" "1f8b08" "gzip magic"
assert_contains "$(magic fx/zstd)" "28b52ffd" "zstd magic"
assert_contains "$(magic fx/none)" "ustar" "tar magic"

log "the oracle: umoci unpack of each"
umoci_unpack_ref "$REG/fx/gzip:v1" "$T/root-gzip"
R=$T/root-gzip
[ -c "$R/dev/null" ] && [ "$(stat -c %t:%T "$R/dev/null")" = 1:3 ] || fail "char device lost"
[ -b "$R/dev/loop0" ] || fail "block device lost"
[ -p "$R/dev/fifo" ] || fail "fifo lost"
assert_eq "f0:11170" "$(stat -c %t:%T "$R/dev/bigminor")" "device 240,70000"
assert_eq "4755 1234:5678" "$(stat -c '%a %u:%g' "$R/hard/suid")" "setuid + owner"
assert_eq "1777" "$(stat -c %a "$R/modes/sticky-dir")" "sticky dir"
assert_eq "3000000:3000001" "$(stat -c %u:%g "$R/owners/big-ids")" "big ids"
assert_eq "$(stat -c %i "$R/hard/a")" "$(stat -c %i "$R/hard/sub/c")" "hardlink a == sub/c"
[ ! -e "$R/hard/b" ] || fail "hard/b was deleted in layer 3"
assert_eq "../does/not/exist" "$(readlink "$R/links/dangling")"
[ -f "$R/links/rel" ] && [ ! -L "$R/links/rel" ] || fail "links/rel should be a file (layer 3)"
x=$("$PY" -c 'import os,sys; print(os.getxattr(sys.argv[1], "security.capability").hex())' "$R/caps/ping")
assert_eq 0100000200200000000000000000000000000000 "$x" "security.capability (cap_net_raw+ep)"
x=$("$PY" -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.binary").hex())' "$R/xattrs/file")
assert_eq 00ff010200 "$x" "binary xattr"
x=$("$PY" -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.on-link", follow_symlinks=False))' "$R/xattrs/symlink")
assert_eq "b'symlink xattr'" "$x" "xattr on a symlink"
assert_eq "1614834367.123456789" "$(stat -c %.9Y "$R/nsec/file")" "nanosecond mtime (layer 4)"
assert_eq "981173106.000000000" "$(stat -c %.9Y "$R/times/nsec")" "umoci-rounded mtime (layer 2)"
assert_eq "1234567890.000000001" "$(stat -c %.9Y "$R/nsec/link")" "symlink nanosecond mtime"
assert_eq "new" "$(ls "$R/opaque")" "opaque dir keeps only layer-4 content"
[ ! -e "$R/data/d01" ] && [ ! -e "$R/todelete" ] || fail "whited-out directories still there"
assert_eq "re-created in layer 4" "$(cat "$R/data/d00/d00/f0000")"
[ -f "$R/dir2file" ] && [ -f "$R/file2dir/child" ] || fail "type changes of layer 3 lost"
assert_eq "version 2, longer than version 1" "$(cat "$R/tobemodified")"
deep=$(find "$R/long" -name file-at-depth)
assert_eq deep "$(cat "$deep")" "deep file"
((${#deep} - ${#R} > 255)) || fail "long path is only $((${#deep} - ${#R})) chars"
assert_eq 2000 "$(find "$R/data" -name 'f[0-9]*' | wc -l | awk '{print $1 + 100}')" \
    "data files (2000 - the 100 in d01; f0000 is deleted, then back)"
"$PY" "$LIB_DIR/treecmp.py" -q "$R" "$R" >/dev/null || fail "treecmp on the fixture itself"

umoci_unpack_ref "$REG/fx/zstd:v1" "$T/root-zstd"
umoci_unpack_ref "$REG/fx/none:v1" "$T/root-none"
assert_tree_eq "$T/root-gzip" "$T/root-zstd" -q
assert_tree_eq "$T/root-gzip" "$T/root-none" -q
rm -rf "$T/root-zstd" "$T/root-none"

log "multi-platform index"
push_multiplatform "$REG/multi:v1"
mt=$(media_types "$REG/multi:v1")
assert_contains "$mt" "linux/amd64"
assert_contains "$mt" "linux/arm64"
umoci_unpack_ref "$REG/multi:v1" "$T/root-arm64" --arch arm64
assert_eq linux/arm64 "$(cat "$T/root-arm64/platform")"
umoci_unpack_ref "$REG/multi:v1" "$T/root-amd64" --arch amd64
assert_eq linux/amd64 "$(cat "$T/root-amd64/platform")"
# (umoci writes manifests without the optional mediaType field: clients must go by Content-Type)
mt=$(media_types "$REG/multi@$MULTI_ARM64_DIGEST")
assert_eq "(none)
application/vnd.oci.image.layer.v1.tar+gzip" "$mt" "arm64 manifest by digest"

# ---- htpasswd -------------------------------------------------------------------------------
log "htpasswd registry"
start_registry --htpasswd alice:s3cret
HREG=$REGISTRY
assert_eq 401 "$(_http_code "http://$HREG/v2/")" "anonymous /v2/"
assert_eq 401 "$(_http_code -u alice:wrong "http://$HREG/v2/")" "wrong password"
assert_eq 200 "$(_http_code -u alice:s3cret "http://$HREG/v2/")" "right password"
push_image "$T/oci" busybox "$HREG/private/bb:v1" --creds alice:s3cret --via skopeo
push_image "$T/oci" busybox "$HREG/private/bb:none" --creds alice:s3cret --compress none
expect_fail skopeo inspect --raw --tls-verify=false "docker://$HREG/private/bb:v1"
assert_contains "$EXPECT_FAIL_OUTPUT" "authentication required"
expect_fail skopeo copy --insecure-policy --dest-tls-verify=false "oci:$T/oci:busybox" \
    "docker://$HREG/anon/bb:v1"
expect_fail skopeo inspect --raw --tls-verify=false --creds alice:wrong "docker://$HREG/private/bb:v1"
umoci_unpack_ref "$HREG/private/bb:v1" "$T/root-htpasswd" --creds alice:s3cret
[ -x "$T/root-htpasswd/bin/busybox" ] || fail "busybox missing from the htpasswd image"

# ---- token auth -----------------------------------------------------------------------------
for variant in "RS256 x5c" "ES256 kid"; do
    read -r alg hdr <<<"$variant"
    log "token registry ($alg, $hdr header)"
    start_registry --token bob:t0ken --token-alg "$alg" --token-header "$hdr"
    TREG=$REGISTRY
    assert_eq 401 "$(_http_code "http://$TREG/v2/")" "anonymous /v2/ on the token registry"
    push_image "$T/oci" busybox "$TREG/tok/bb:v1" --creds bob:t0ken --via skopeo
    push_image "$T/oci" busybox "$TREG/tok/bb:none" --creds bob:t0ken --compress none
    expect_fail skopeo inspect --raw --tls-verify=false "docker://$TREG/tok/bb:v1"
    assert_contains "$EXPECT_FAIL_OUTPUT" "denied"
    expect_fail skopeo inspect --raw --tls-verify=false --creds bob:nope "docker://$TREG/tok/bb:v1"
    expect_fail skopeo copy --insecure-policy --dest-tls-verify=false "oci:$T/oci:busybox" \
        "docker://$TREG/anon/bb:v1"
    tok=$(registry_token tok/bb pull)
    assert_eq 200 "$(_http_code -H "Authorization: Bearer $tok" \
        -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$TREG/v2/tok/bb/manifests/v1")" \
        "manifest with a token"
    assert_eq 401 "$(_http_code -H "Authorization: Bearer $tok" -X DELETE \
        "http://$TREG/v2/tok/bb/manifests/$PUSHED_DIGEST")" "pull token cannot delete"
    anon_tok=$(REGISTRY_CREDS="" registry_token tok/bb pull)
    assert_eq 401 "$(_http_code -H "Authorization: Bearer $anon_tok" \
        "http://$TREG/v2/tok/bb/manifests/v1")" "anonymous token"
    assert_eq 401 "$(_http_code -u bob:bad "http://$TOKEN_SERVER/token?service=$TOKEN_SERVICE&scope=repository:tok/bb:pull")" \
        "token server, wrong password"
    reqs=$(curl -sf "http://$TOKEN_SERVER/_stub/requests")
    assert_contains "$reqs" '"user": "bob"' "token requests are recorded"
    assert_contains "$reqs" '"actions": ["pull", "push"]' "push granted to bob"
done
TOKEN_REG=$TREG
REGISTRY=$REG # start_badregistry's upstream

# ---- the bad registry -----------------------------------------------------------------------
BB_SIZE=$(curl -sfI "http://$REG/v2/bb/blobs/$BB_LAYER" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-length" { print $2 }')
log "bad registry modes on blob $BB_LAYER ($BB_SIZE bytes)"
HALF=$((BB_SIZE / 2))
get_blob() { # HOST OUT [curl args...]: prints curl's exit status
    local host=$1 out=$2 rc=0
    shift 2
    curl -s --max-time 20 -o "$out" "$@" "http://$host/v2/bb/blobs/$BB_LAYER" || rc=$?
    echo "$rc"
}
stub_log() { curl -sf "http://$BADREG/_stub/log"; }

start_badregistry pass
assert_eq 0 "$(get_blob "$BADREG" "$T/blob")" "pass"
assert_eq "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "pass: blob digest"
# keep-alive: two requests over one connection
out=$(curl -sv -o /dev/null -o /dev/null "http://$BADREG/v2/" "http://$BADREG/v2/bb/blobs/$BB_LAYER" 2>&1)
assert_contains "$out" "Re-using existing connection" "keep-alive through the proxy"
# a push through the proxy (chunked PATCH bodies, Location rewriting) and a pull back
push_image "$T/oci" busybox "$BADREG/viaproxy/bb:v1" --via skopeo
umoci_unpack_ref "$BADREG/viaproxy/bb:v1" "$T/root-proxy"
assert_tree_eq "$T/root-htpasswd" "$T/root-proxy" -q

start_badregistry drop-once
assert_eq 18 "$(get_blob "$BADREG" "$T/blob")" "drop-once: first GET is cut short (curl 18)"
assert_eq "$HALF" "$(stat -c %s "$T/blob")" "drop-once: half the body"
assert_eq 0 "$(get_blob "$BADREG" "$T/rest" -r "$HALF-")" "drop-once: ranged retry"
cat "$T/rest" >>"$T/blob"
assert_eq "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "drop-once: resumed blob digest"
assert_contains "$(stub_log)" "\"range\": \"bytes=$HALF-\"" "drop-once: Range passed on"
assert_eq 0 "$(get_blob "$BADREG" "$T/blob")" "drop-once: later GETs whole"
curl -sf -X POST "http://$BADREG/_stub/reset" >/dev/null
assert_eq 18 "$(get_blob "$BADREG" "$T/blob")" "drop-once: again after reset"

start_badregistry wrong-bytes
for i in 1 2; do
    assert_eq 0 "$(get_blob "$BADREG" "$T/blob")" "wrong-bytes: transfer completes"
    assert_eq "$BB_SIZE" "$(stat -c %s "$T/blob")" "wrong-bytes: full length"
    assert_ne "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "wrong-bytes: digest must not match"
done
curl -sf -o "$T/good" "http://$REG/v2/bb/blobs/$BB_LAYER"
assert_eq 1 "$({ cmp -l "$T/blob" "$T/good" || true; } | wc -l)" \
    "wrong-bytes: exactly one byte differs"

start_badregistry truncate
for i in 1 2; do
    assert_eq 18 "$(get_blob "$BADREG" "$T/blob")" "truncate: cut short every time"
done
assert_eq 18 "$(get_blob "$BADREG" "$T/blob" -r "$HALF-")" "truncate: ranged GET cut short too"

start_badregistry slow-429
out=$(curl -s -D - -o /dev/null "http://$BADREG/v2/bb/blobs/$BB_LAYER" | tr -d '\r')
assert_contains "$out" "HTTP/1.1 429" "slow-429: first request"
assert_contains "$out" "Retry-After: 1" "slow-429: Retry-After"
assert_eq 0 "$(get_blob "$BADREG" "$T/blob" -f)" "slow-429: second request"
assert_eq "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "slow-429: blob digest"
out=$(curl -s -D - -o /dev/null "http://$BADREG/v2/fx/gzip/blobs/$BB_LAYER" | tr -d '\r')
assert_contains "$out" "HTTP/1.1 429" "slow-429: per path"
assert_eq 200 "$(_http_code -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    "http://$BADREG/v2/bb/manifests/latest")" "slow-429 spares manifests"

start_badregistry redirect
out=$(curl -s -D - -o /dev/null "http://$BADREG/v2/bb/blobs/$BB_LAYER" | tr -d '\r')
assert_contains "$out" "HTTP/1.1 307" "redirect: status"
assert_contains "$out" "Location: http://$BADREG_REDIRECT/blob/" "redirect: to the other host:port"
assert_eq 0 "$(get_blob "$BADREG" "$T/blob" -fL -H 'Authorization: Bearer secret')" "redirect: follow"
assert_eq "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "redirect: blob digest"
seen=$(curl -sf "http://$BADREG/_stub/auth-seen")
assert_contains "$seen" '"requests": 1' "redirect: blob host reached once"
assert_contains "$seen" '"auth_seen": false' "redirect: curl keeps credentials from another port"
assert_eq 0 "$(get_blob "$BADREG" "$T/blob" -f -r "$HALF-" --location-trusted -H 'Authorization: Bearer secret')" \
    "redirect: ranged, credentials sent on purpose"
assert_eq $((BB_SIZE - HALF)) "$(stat -c %s "$T/blob")" "redirect: Range passed to the blob host"
seen=$(curl -sf "http://$BADREG/_stub/auth-seen")
assert_contains "$seen" '"with_auth": 1' "redirect: an Authorization that arrives is recorded"

start_badregistry redirect --reject-auth
assert_eq 400 "$(_http_code -L --location-trusted -H 'Authorization: Bearer x' \
    "http://$BADREG/v2/bb/blobs/$BB_LAYER")" "redirect --reject-auth: leaked credentials refused"
assert_eq 200 "$(_http_code -L -H 'Authorization: Bearer x' "http://$BADREG/v2/bb/blobs/$BB_LAYER")" \
    "redirect --reject-auth: without credentials"

log "redirect in front of the token registry"
start_badregistry redirect --upstream "$TOKEN_REG"
REGISTRY_CREDS=bob:t0ken
tok=$(registry_token tok/bb pull)
out=$(curl -s -fL -o "$T/blob" -w '%{http_code}' -H "Authorization: Bearer $tok" \
    "http://$BADREG/v2/tok/bb/blobs/$BB_LAYER")
assert_eq 200 "$out" "redirected blob from the token registry"
assert_eq "${BB_LAYER#sha256:}" "$(sha "$T/blob")" "redirected blob digest"
assert_contains "$(curl -sf "http://$BADREG/_stub/auth-seen")" '"auth_seen": false'
log "fixtures ok"
