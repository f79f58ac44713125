# afsp pull through a misbehaving registry (badregistry.py, one mode at a time):
#   drop-once    every blob's first GET is cut in the middle: the pull resumes each layer with a
#                Range request from the byte it had, and the content is right (gzip and zstd)
#   wrong-bytes  a layer with a flipped byte (gzip, zstd, plain tar): exit 1, one line "digest
#                mismatch", and the store (holding another image) is exactly as before
#   truncate     a layer always cut short: exit 1 with one clear line, in bounded time, store
#                unchanged
#   slow-429     429 + Retry-After: 1 on the first GET of each blob and manifest: the client waits
#                about a second and succeeds
#   redirect     blobs redirected to another host:port by an htpasswd registry: the pull succeeds
#                and the blob host never sees the credentials (also when it refuses them, as S3)
. "$(dirname "$0")/lib.sh"

T=$TEST_TMPDIR
# no credentials of whoever runs the tests; the redirect case sets its own
export DOCKER_CONFIG=$T/docker-none
mkdir -p "$DOCKER_CONFIG"
require curl timeout

# proxy_log PYEXPR: the entries of $BADREG's log for which PYEXPR (over the entry e) holds, one
# compact JSON object a line, in the order the proxy answered them.
proxy_log() {
    curl -sf --max-time 10 "http://$BADREG/_stub/log" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    if eval(sys.argv[1]):
        print(json.dumps(e, sort_keys=True))' "$1"
}

# store_state DATA: everything a failed pull must leave alone: the layers and images as afsp lists
# them, the temporary files, and the blob files with their sizes and modification times.
store_state() {
    local d=$1
    "$AFSP_BIN" --data "$d" layers --json || fail "afsp layers failed on $d"
    "$AFSP_BIN" --data "$d" images --json || fail "afsp images failed on $d"
    echo "tmp: $(ls -A "$d/tmp")"
    (cd "$d/blobs/sha256" && stat -c '%n %s %Y' -- * 2>/dev/null) || true
}

# pull_ok DATA REF: afsp pull REF must succeed and print "REF sha256:<manifest digest>".
pull_ok() {
    local out
    out=$("$AFSP_BIN" --data "$1" pull "$2" 2>"$T/pull.err") ||
        fail "afsp pull $2 failed: $(cat "$T/pull.err")"
    [[ $out =~ ^"$2 "sha256:[0-9a-f]{64}$ ]] || fail "afsp pull $2 printed [$out]"
    PULLED_DIGEST=${out##* }
}

# pull_fails DATA REF: afsp pull REF must exit 1 (within 120 s) with nothing on stdout and exactly
# one line on stderr, kept in PULL_ERR; PULL_SECS is how long it took.
pull_fails() {
    local rc=0 t0
    t0=$(date +%s%N)
    timeout 120 "$AFSP_BIN" --data "$1" pull "$2" >"$T/pull.out" 2>"$T/pull.err" || rc=$?
    PULL_SECS=$((($(date +%s%N) - t0) / 1000000000))
    PULL_ERR=$(cat "$T/pull.err")
    assert_eq 1 "$rc" "exit status of the failed pull of $2 (stderr: $PULL_ERR)"
    assert_eq "" "$(cat "$T/pull.out")" "stdout of the failed pull of $2"
    assert_eq 1 "$(wc -l <"$T/pull.err")" "stderr lines of the failed pull of $2 ([$PULL_ERR])"
}

# all_complete DATA N: afsp layers lists N layers, each complete with all its chunks.
all_complete() {
    "$AFSP_BIN" --data "$1" layers --json | "$PY" -c '
import json, sys
ls = json.load(sys.stdin)
bad = [l["digest"] for l in ls if not l["complete"] or l["chunksPresent"] != l["chunks"]]
assert not bad, "incomplete layers: %s" % bad
assert len(ls) == int(sys.argv[1]), "%d layers, wanted %s" % (len(ls), sys.argv[1])' "$2" ||
        fail "layers of $1 are not as expected"
}

# ---- images ---------------------------------------------------------------------------------
start_registry
REG=$REGISTRY
build_fixture_image "$T/oci" fixture
build_busybox_image "$T/oci" base --file /etc/motd=base
build_busybox_image "$T/oci" victim --file /etc/motd=victim
declare -A FX_DIGEST
push_image "$T/oci" fixture "$REG/fx:gzip" --compress gzip
FX_DIGEST[gzip]=$PUSHED_DIGEST
push_image "$T/oci" fixture "$REG/fx:zstd" --compress zstd
FX_DIGEST[zstd]=$PUSHED_DIGEST
push_image "$T/oci" base "$REG/base:1"
for c in gzip zstd none; do
    push_image "$T/oci" victim "$REG/victim:$c" --compress "$c"
done
VICTIM_GZIP=$(layer_digests "$REG/victim:gzip")
VICTIM_ZSTD=$(layer_digests "$REG/victim:zstd")
VICTIM_NONE=$(layer_digests "$REG/victim:none")
umoci_unpack_ref "$REG/fx:gzip" "$T/fx-root"
umoci_unpack_ref "$REG/victim:gzip" "$T/victim-root"

# ---- drop-once: resumed with Range, content right -------------------------------------------
for c in gzip zstd; do
    log "drop-once, fixture image ($c)"
    start_badregistry drop-once
    D=$T/data-drop-$c
    pull_ok "$D" "$BADREG/fx:$c"
    assert_eq "${FX_DIGEST[$c]}" "$PULLED_DIGEST" "manifest digest of fx:$c"
    for l in $(layer_digests "$REG/fx:$c"); do
        gets=$(proxy_log "e['method'] == 'GET' and e['path'].endswith('/blobs/$l')")
        n=$(wc -l <<<"$gets")
        assert_eq 2 "$n" "GETs of layer $l (cut once, then resumed): $gets"
        res=$(printf '%s\n' "$gets" | "$PY" -c '
import json, sys
a, b = [json.loads(x) for x in sys.stdin]
assert a["action"] == "dropped" and a["range"] is None and a["bytes"] > 0, a
assert b["action"] == "pass" and b["status"] == 206, b
print(a["bytes"], b["range"])') || fail "layer $l was not cut then resumed: $gets"
        read -r cut resumed <<<"$res"
        assert_eq "bytes=$cut-" "$resumed" "layer $l resumed from the byte it had"
    done
    all_complete "$D" 4
    assert_eq "" "$(ls -A "$D/tmp")" "temporary files after the pull"
    "$AFSP_BIN" --data "$D" inspect extract "$BADREG/fx:$c" "$T/out-drop-$c" ||
        fail "extract of $BADREG/fx:$c failed"
    assert_tree_eq "$T/fx-root" "$T/out-drop-$c" -q
    rm -rf "$T/out-drop-$c"
    kill_bg "$BADREG_PID"
done

# ---- wrong-bytes: digest mismatch, store unchanged -------------------------------------------
log "wrong-bytes: a store that holds another image"
D=$T/data-bad
pull_ok "$D" "$REG/base:1"
all_complete "$D" 1
before=$(store_state "$D")
start_badregistry wrong-bytes --only "$VICTIM_GZIP" --only "$VICTIM_ZSTD" --only "$VICTIM_NONE"
for c in gzip zstd none; do
    case $c in gzip) l=$VICTIM_GZIP ;; zstd) l=$VICTIM_ZSTD ;; none) l=$VICTIM_NONE ;; esac
    log "wrong-bytes: layer $l ($c)"
    pull_fails "$D" "$BADREG/victim:$c"
    assert_eq "afsp: cannot pull $BADREG/victim:$c: layer sha256:${l:7:12}…: digest mismatch" \
        "$PULL_ERR" "the error of a corrupted $c layer"
    assert_ne "" "$(proxy_log "e['path'].endswith('/blobs/$l') and e['action'] == 'flipped'")" \
        "the proxy flipped a byte of $l"
    assert_eq "$before" "$(store_state "$D")" "the store after the failed pull ($c)"
    [ ! -e "$D/blobs/sha256/${l#sha256:}" ] || fail "a blob file was kept for the corrupted layer $l"
done
kill_bg "$BADREG_PID"

# ---- truncate: a clear error in bounded time, store unchanged --------------------------------
log "truncate: layer $VICTIM_GZIP always cut short"
start_badregistry truncate --only "$VICTIM_GZIP"
pull_fails "$D" "$BADREG/victim:gzip"
[[ $PULL_ERR =~ ^"afsp: cannot pull $BADREG/victim:gzip: layer sha256:${VICTIM_GZIP:7:12}…: ".*(truncated|network error) ]] ||
    fail "the error of a truncated layer: [$PULL_ERR]"
((PULL_SECS < 60)) || fail "the pull of an always-truncated layer took ${PULL_SECS}s"
gets=$(proxy_log "e['method'] == 'GET' and e['path'].endswith('/blobs/$VICTIM_GZIP')")
(($(wc -l <<<"$gets") >= 2)) || fail "the truncated layer was not retried: $gets"
assert_eq "" "$(printf '%s\n' "$gets" | grep -v '"action": "dropped"' || true)" \
    "every GET of the layer was cut"
# once a GET brings nothing new, the client backs off between attempts instead of hammering
span=$(printf '%s\n' "$gets" | "$PY" -c '
import json, sys
t = [json.loads(x)["t"] for x in sys.stdin]
print("%.2f" % (t[-1] - t[0]))')
"$PY" -c 'import sys; sys.exit(float(sys.argv[1]) < 1.0)' "$span" ||
    fail "the retries of the truncated layer spanned only ${span}s: no backoff"
assert_eq "$before" "$(store_state "$D")" "the store after the truncated pull"
log "truncate: failed after ${PULL_SECS}s and $(wc -l <<<"$gets") GETs over ${span}s"
kill_bg "$BADREG_PID"

log "the same store still pulls the image from the real registry"
pull_ok "$D" "$REG/victim:gzip"
all_complete "$D" 2

# ---- slow-429: Retry-After honoured -----------------------------------------------------------
log "slow-429 (blobs and manifests)"
start_badregistry slow-429 --scope all
D=$T/data-429
pull_ok "$D" "$BADREG/victim:gzip"
# every path answered 429 once is then fetched again, after Retry-After (1 s), and succeeds
curl -sf --max-time 10 "http://$BADREG/_stub/log" | "$PY" -c '
import json, sys
log = [e for e in json.load(sys.stdin) if e["method"] == "GET"]
limited = [e for e in log if e["status"] == 429]
assert len(limited) >= 3, "expected 429s for the manifest, the config and the layer: %s" % log
assert any("/blobs/" + sys.argv[1] in e["path"] for e in limited), "layer not limited: %s" % log
for e in limited:
    after = [x for x in log if x["path"] == e["path"] and x["t"] > e["t"]]
    assert after, "no retry after the 429 of %s" % e["path"]
    r = after[0]
    assert 200 <= r["status"] < 300, "retry of %s: %s" % (e["path"], r)
    dt = r["t"] - e["t"]
    assert 0.95 <= dt < 10, "retry of %s %.2f s after the 429 (Retry-After: 1)" % (e["path"], dt)
    print("429 then %d after %.2f s: %s" % (r["status"], dt, e["path"]))' "$VICTIM_GZIP" ||
    fail "Retry-After was not honoured"
all_complete "$D" 1
"$AFSP_BIN" --data "$D" inspect extract "$BADREG/victim:gzip" "$T/out-429" || fail "extract failed"
assert_tree_eq "$T/victim-root" "$T/out-429" -q
kill_bg "$BADREG_PID"

# ---- redirect: credentials stay with the registry ---------------------------------------------
start_registry --htpasswd u:p
HREG=$REGISTRY
push_image "$T/oci" victim "$HREG/private/victim:1" --creds u:p
PRIVATE_DIGEST=$PUSHED_DIGEST
# docker_config HOST: a docker config directory with Basic credentials u:p for HOST
docker_config() {
    local dir
    dir=$(mktemp -d "$T/docker.XXXX")
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" "$(printf u:p | base64)" >"$dir/config.json"
    echo "$dir"
}
for variant in plain reject-auth; do
    log "redirect ($variant) in front of the htpasswd registry"
    if [ "$variant" = plain ]; then
        start_badregistry redirect --upstream "$HREG"
    else
        start_badregistry redirect --upstream "$HREG" --reject-auth
    fi
    D=$T/data-redirect-$variant
    # without credentials the registry refuses: the credentials below are what makes it work
    pull_fails "$D" "$BADREG/private/victim:1"
    assert_eq "" "$("$AFSP_BIN" --data "$D" layers --json | tr -d '[:space:]' | sed 's/^\[\]$//')" \
        "no layer after the refused pull"
    curl -sf -X POST --max-time 10 "http://$BADREG/_stub/reset" >/dev/null
    DOCKER_CONFIG=$(docker_config "$BADREG") pull_ok "$D" "$BADREG/private/victim:1"
    assert_eq "$PRIVATE_DIGEST" "$PULLED_DIGEST" "manifest digest of private/victim:1"
    all_complete "$D" 1
    # the registry got the credentials, and sent the blobs (config and layer) elsewhere
    redirected=$(proxy_log "e['action'] == 'redirected'")
    (($(wc -l <<<"$redirected") >= 2)) || fail "expected the config and the layer redirected: $redirected"
    assert_eq "" "$(printf '%s\n' "$redirected" | grep -v '"authorization": true' || true)" \
        "every redirected request reached the registry with credentials"
    assert_contains "$redirected" "/blobs/$VICTIM_GZIP" "the layer was redirected"
    seen=$(curl -sf --max-time 10 "http://$BADREG/_stub/auth-seen")
    "$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["requests"] >= 2, "the blob host saw %d requests" % s["requests"]
assert s["with_auth"] == 0 and not s["auth_seen"], "credentials leaked to the blob host: %s" % s' \
        "$seen" || fail "redirect ($variant): $seen"
    "$AFSP_BIN" --data "$D" inspect extract "$BADREG/private/victim:1" "$T/out-redirect-$variant" ||
        fail "extract failed"
    assert_tree_eq "$T/victim-root" "$T/out-redirect-$variant" -q
    kill_bg "$BADREG_PID"
done
log "pull faults ok"
