# lib.sh - fixtures for afsp integration tests. Source it first thing:
#
#     . "$(dirname "$0")/lib.sh"
#
# Environment (set by tests/runner.c; defaults for running a script by hand from the repo root):
#   TEST_TMPDIR  a fresh directory, removed afterwards (made, and removed, here when unset)
#   AFSP_BIN     the afsp binary          AFSP_SRC  the repo root
#
# Helpers (each documented where it is defined):
#   fail MSG | log MSG | assert_eq EXP ACT [MSG] | assert_ne A B [MSG]
#   assert_contains HAYSTACK NEEDLE [MSG] | assert_not_contains HAYSTACK NEEDLE [MSG]
#   assert_file_eq F1 F2 [MSG] | assert_tree_eq A B [treecmp options] | expect_fail CMD...
#   on_exit CMD... | start_bg NAME CMD... (exports BG_PID) | kill_bg PID
#   free_port | wait_port PORT [TIMEOUT [PID]] | wait_until TIMEOUT CMD...
#   start_registry [--htpasswd U:P] [--token U:P [--token-alg RS256|ES256]
#                  [--token-header x5c|kid|both] [--token-anonymous empty|deny|pull]]
#   require CMD...
#   registry_token REPO [ACTIONS]   (a Bearer token from the token server, with REGISTRY_CREDS)
#   start_badregistry MODE [--upstream HOST:PORT] [--scope blobs|all] [--reject-auth]
#                     [--only DIGEST]... [--rate BYTES_PER_SEC]
#   build_busybox_image OCI_DIR TAG [--applets "sh ls ..."] [--arch A] [--file PATH=TEXT]...
#                       [--cmd CMD]
#   build_fixture_image OCI_DIR TAG [--files N] [--seed S]
#   build_stress_image OCI_DIR TAG
#   push_image OCI_DIR TAG REF [--compress gzip|zstd|none] [--creds U:P] [--format oci|v2s2]
#              [--via ocitool|skopeo]   (exports PUSHED_DIGEST)
#   push_multiplatform REF [--creds U:P]
#   umoci_unpack_ref REF DEST [--creds U:P] [--arch A]
#   build_debian_python_rootfs DIR | build_debian_python_oci ROOTFS OCI_DIR TAG   (cached)
#   python_image_layout DIR                     that image, tag py, copied to the layout DIR
#   build_oci_of_dir DIR OCI_DIR TAG [umoci config options...]                   (cached)
#   manifest_raw REF [--creds U:P] | media_types REF [--creds U:P] | layer_digests REF [--creds U:P]
#
# Every server started here is killed on exit (also on failure and on SIGTERM from the
# runner's timeout), and its log is printed when the test fails. Only 127.0.0.1 is used.

set -Eeuo pipefail
shopt -s inherit_errexit

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
: "${AFSP_SRC:=$(cd "$LIB_DIR/../.." && pwd)}"
: "${AFSP_BIN:=$AFSP_SRC/build/afsp}"
export AFSP_SRC AFSP_BIN
export TZ=UTC

_ON_EXIT=()
_LOGS=()
_EXITING=0

if [ -z "${TEST_TMPDIR:-}" ]; then
    TEST_TMPDIR=$(mktemp -d /tmp/afsp-itest.XXXXXX)
    _ON_EXIT+=("rm -rf '$TEST_TMPDIR'")
fi
export TEST_TMPDIR

# skopeo, kept away from the credentials of whoever runs the tests. (REGISTRY_AUTH_FILE is set
# for skopeo only: the registry reads every REGISTRY_* variable as a config override, which is
# also why the REGISTRY_* variables below are not exported, and why start_registry runs the
# registry with a clean environment.)
skopeo() { REGISTRY_AUTH_FILE=$TEST_TMPDIR/.skopeo-auth.json DOCKER_CONFIG=$TEST_TMPDIR/.docker command skopeo "$@"; }

# ---------------------------------------------------------------------------------------------
# messages, assertions

log() { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }

fail() {
    local i
    printf 'FAIL: %s\n' "$*" >&2
    for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
        printf '    at %s (%s:%s)\n' "${FUNCNAME[$i]}" "${BASH_SOURCE[$i]##*/}" \
            "${BASH_LINENO[$((i - 1))]}" >&2
    done
    exit 1
}

assert_eq() {
    [ "$1" == "$2" ] || fail "${3:-values differ}: expected [$1], got [$2]"
}

assert_ne() {
    [ "$1" != "$2" ] || fail "${3:-values are equal}: both are [$1]"
}

assert_contains() {
    case "$1" in
    *"$2"*) ;;
    *) fail "${3:-missing text}: [$2] not found in: $(printf '%s' "$1" | head -c 2000)" ;;
    esac
}

assert_not_contains() {
    case "$1" in
    *"$2"*) fail "${3:-unexpected text}: [$2] found in: $(printf '%s' "$1" | head -c 2000)" ;;
    *) ;;
    esac
}

assert_file_eq() {
    local a=$1 b=$2
    [ -e "$a" ] || fail "${3:-files differ}: $a does not exist"
    [ -e "$b" ] || fail "${3:-files differ}: $b does not exist"
    if ! cmp -s "$a" "$b"; then
        fail "${3:-files differ}: $a ($(stat -c %s "$a") bytes, $(sha256sum <"$a" | cut -c1-16))" \
            "!= $b ($(stat -c %s "$b") bytes, $(sha256sum <"$b" | cut -c1-16)): $(cmp "$a" "$b" 2>&1 | head -1)"
    fi
}

# assert_tree_eq A B [treecmp.py options]: the two trees match exactly (see treecmp.py).
assert_tree_eq() {
    local a=$1 b=$2
    shift 2
    "$PY" "$LIB_DIR/treecmp.py" "$@" "$a" "$b" || fail "trees differ: $a vs $b"
}

# expect_fail CMD...: CMD must exit non-zero; its output is kept in $EXPECT_FAIL_OUTPUT.
expect_fail() {
    EXPECT_FAIL_OUTPUT=$("$@" 2>&1) && fail "expected failure, but succeeded: $*" \
        "(output: $(printf '%s' "$EXPECT_FAIL_OUTPUT" | head -c 1000))"
    return 0
}

# ---------------------------------------------------------------------------------------------
# cleanup

# on_exit CMD...: run CMD (eval'd) at exit, after the commands registered later.
on_exit() { _ON_EXIT+=("$*"); }

_run_on_exit() {
    local rc=$? i
    ((_EXITING)) && return
    _EXITING=1
    set +e +E
    trap - ERR
    if ((rc != 0)) && ((${#_LOGS[@]})); then
        for i in "${_LOGS[@]}"; do
            [ -s "$i" ] || continue
            printf -- '---- last lines of %s ----\n' "${i#"$TEST_TMPDIR"/}"
            tail -n 25 "$i"
        done
    fi
    for ((i = ${#_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${_ON_EXIT[$i]}" || true
    done
    if ((rc != 0)); then
        printf 'test exited with status %d\n' "$rc"
    fi
    exit "$rc"
}
trap _run_on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
# where a failing command ended the test (only at top level: a failure inside $(...) is seen
# again when the assignment using it fails)
# shellcheck disable=SC2154
trap '_rc=$?; ((BASH_SUBSHELL)) || printf "error: exit status %d at %s:%s: %s\n" "$_rc" "${BASH_SOURCE[0]##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR

# start_bg NAME CMD...: runs CMD in the background, output to $TEST_TMPDIR/logs/NAME.log (shown
# if the test fails), killed at exit. Sets BG_PID and BG_LOG.
start_bg() {
    local name=$1
    shift
    mkdir -p "$TEST_TMPDIR/logs"
    BG_LOG=$(mktemp "$TEST_TMPDIR/logs/$name.XXXX.log")
    "$@" >"$BG_LOG" 2>&1 </dev/null &
    BG_PID=$!
    _LOGS+=("$BG_LOG")
    on_exit "kill_bg $BG_PID"
}

# kill_bg PID: SIGTERM, up to 5 s to exit, then SIGKILL.
kill_bg() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# ports, readiness

# free_port: prints a loopback TCP port that is free now and not handed out before by this test.
free_port() {
    local used=$TEST_TMPDIR/.ports-used
    touch "$used"
    "$PY" - "$used" <<'EOF'
import socket, sys
used = set(open(sys.argv[1]).read().split())
for _ in range(50):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = str(s.getsockname()[1])
    s.close()
    if p not in used:
        open(sys.argv[1], "a").write(p + "\n")
        print(p)
        break
else:
    sys.exit("free_port: no free port")
EOF
}

# wait_port PORT [TIMEOUT_SECS=15 [PID [HOST=127.0.0.1]]]: until HOST:PORT accepts a TCP
# connection. Fails at once if PID (the server) has exited, and after TIMEOUT.
wait_port() {
    local port=$1 timeout=${2:-15} pid=${3:-} host=${4:-127.0.0.1} deadline
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    while ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            fail "server (pid $pid) exited before listening on port $port"
        fi
        (($(date +%s%N) < deadline)) || fail "nothing listening on $host:$port after ${timeout}s"
        sleep 0.05
    done
}

# wait_until TIMEOUT_SECS CMD...: polls CMD (every 0.1 s) until it succeeds; fails after TIMEOUT.
wait_until() {
    local timeout=$1 deadline
    shift
    deadline=$(($(date +%s%N) + timeout * 1000000000))
    until "$@"; do
        (($(date +%s%N) < deadline)) || fail "timed out after ${timeout}s waiting for: $*"
        sleep 0.1
    done
}

_http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# require CMD...: fail clearly when a tool the fixtures need is missing (scripts/deps.sh
# installs them all).
require() {
    local c
    for c in "$@"; do
        type -P "$c" >/dev/null || fail "missing tool: $c (run scripts/deps.sh)"
    done
}

# ---------------------------------------------------------------------------------------------
# registries

# start_registry [--htpasswd USER:PASS] [--token USER:PASS [--token-alg RS256|ES256]
#                [--token-header x5c|kid|both] [--token-anonymous empty|deny|pull]]
#                [--netns NS IP | --host IP]
# Starts Debian's distribution registry (docker-registry serve) on 127.0.0.1:<free port> (or, with
# --netns, on IP:<port> in network namespace NS, see netns_join; with --host, on IP:<port>), its
# config and storage in a fresh directory under $TEST_TMPDIR, and waits until /v2/ answers.
#   --htpasswd U:P  Basic auth (htpasswd -B file)
#   --token U:P     token auth against tokenserver.py (started here, on another port), which
#                   accepts U:P and signs JWTs with a key whose self-signed certificate is the
#                   registry's rootcertbundle; anonymous requests get a token granting nothing
#                   (--token-anonymous: deny = 401 from the token server; pull = anonymous pull)
# Exports REGISTRY=127.0.0.1:PORT; sets (not exported, see above) REGISTRY_PORT, REGISTRY_DIR
# (storage is $REGISTRY_DIR/data), REGISTRY_PID, REGISTRY_LOG (its access log), REGISTRY_AUTH (none|htpasswd|token),
# REGISTRY_CREDS (U:P or empty), and with --token, TOKEN_SERVER=127.0.0.1:PORT, TOKEN_REALM,
# TOKEN_SERVICE, TOKEN_CERT, TOKEN_SERVER_PID (exported). Call it again for a second registry
# (save the variables first).
start_registry() {
    local htpasswd="" token="" alg=RS256 header=x5c anon=empty dir port auth_yaml="" attempt
    local ns="" host=127.0.0.1
    while (($#)); do
        case $1 in
        --netns) ns=$2; host=$3; shift 3 ;;
        --host) host=$2; shift 2 ;;
        --htpasswd) htpasswd=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        --token-alg) alg=$2; shift 2 ;;
        --token-header) header=$2; shift 2 ;;
        --token-anonymous) anon=$2; shift 2 ;;
        *) fail "start_registry: unknown option $1" ;;
        esac
    done
    require docker-registry curl
    dir=$(mktemp -d "$TEST_TMPDIR/registry.XXXX")
    mkdir -p "$dir/data"
    REGISTRY_AUTH=none
    REGISTRY_CREDS=""
    TOKEN_SERVER="" TOKEN_REALM="" TOKEN_SERVICE="" TOKEN_CERT="" TOKEN_SERVER_PID=""
    if [ -n "$htpasswd" ]; then
        require htpasswd
        htpasswd -Bbn "${htpasswd%%:*}" "${htpasswd#*:}" >"$dir/htpasswd" 2>/dev/null ||
            fail "htpasswd failed (apache2-utils installed?)"
        auth_yaml="auth:
  htpasswd:
    realm: afsp-test-registry
    path: $dir/htpasswd"
        REGISTRY_AUTH=htpasswd
        REGISTRY_CREDS=$htpasswd
    elif [ -n "$token" ]; then
        require openssl
        case $alg in
        RS256) openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/token.key" \
            -out "$dir/token.crt" -days 2 -subj /CN=afsp-test-token >/dev/null 2>&1 ;;
        ES256) openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$dir/token.key" -out "$dir/token.crt" -days 2 -subj /CN=afsp-test-token \
            >/dev/null 2>&1 ;;
        *) fail "start_registry: --token-alg RS256 or ES256" ;;
        esac || fail "openssl could not make the token signing key"
        TOKEN_SERVICE=afsp-test-registry
        TOKEN_CERT=$dir/token.crt
        local tport
        tport=$(free_port)
        start_bg tokenserver "$PY" "$LIB_DIR/tokenserver.py" --port "$tport" \
            --key "$dir/token.key" --cert "$dir/token.crt" --issuer afsp-test-issuer \
            --service "$TOKEN_SERVICE" --user "$token" --alg "$alg" --header "$header" \
            --anonymous "$anon"
        TOKEN_SERVER_PID=$BG_PID
        wait_port "$tport" 15 "$TOKEN_SERVER_PID"
        TOKEN_SERVER=127.0.0.1:$tport
        TOKEN_REALM=http://$TOKEN_SERVER/token
        export TOKEN_SERVER TOKEN_REALM TOKEN_SERVICE TOKEN_CERT TOKEN_SERVER_PID
        auth_yaml="auth:
  token:
    realm: $TOKEN_REALM
    service: $TOKEN_SERVICE
    issuer: afsp-test-issuer
    rootcertbundle: $dir/token.crt"
        REGISTRY_AUTH=token
        REGISTRY_CREDS=$token
    fi
    for attempt in 1 2 3; do
        port=$(free_port)
        cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $host:$port
  secret: $(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
$auth_yaml
EOF
        # a clean environment: the registry reads REGISTRY_* variables as config overrides
        start_bg registry ${ns:+ip netns exec "$ns"} env -i PATH="$PATH" TZ=UTC \
            docker-registry serve "$dir/config.yml"
        REGISTRY_PID=$BG_PID
        REGISTRY_LOG=$BG_LOG
        local code="" i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$REGISTRY_PID" 2>/dev/null || break
            code=$(_http_code "http://$host:$port/v2/")
            [ "$code" = 200 ] || [ "$code" = 401 ] && break
            sleep 0.05
        done
        if [ "$code" = 200 ] || [ "$code" = 401 ]; then
            break
        fi
        if grep -q "address already in use" "$BG_LOG" && ((attempt < 3)); then
            log "registry port $port was taken, trying another"
            kill_bg "$REGISTRY_PID"
            continue
        fi
        fail "registry did not come up on $host:$port (last /v2/ status: ${code:-none})"
    done
    REGISTRY=$host:$port
    REGISTRY_PORT=$port
    REGISTRY_DIR=$dir
    export REGISTRY
    log "registry at $REGISTRY (auth: $REGISTRY_AUTH${TOKEN_SERVER:+, token server $TOKEN_SERVER})"
}

# Network namespaces made by a test, removed at exit. netns_hub HUB ROOT_IP: a namespace HUB
# holding a bridge, which this namespace joins at ROOT_IP/24. netns_join HUB NS IP [RATE]: a new
# namespace NS on HUB's bridge at IP/24 (with its own loopback up), what NS sends capped at RATE
# (tc tbf, e.g. 100mbit) if given. Only the namespaces' own devices are touched.
_NETNS_N=0
_veth_pair() { # NAME_A NAME_B
    ip link add "$1" type veth peer name "$2" || fail "ip link add $1"
    on_exit "ip link del '$1' 2>/dev/null || true"
}
netns_hub() {
    local hub=$1 ip=$2 v=vh$$n$_NETNS_N
    _NETNS_N=$((_NETNS_N + 1))
    require ip tc
    ip netns add "$hub" || fail "ip netns add $hub"
    on_exit "ip netns del '$hub' 2>/dev/null || true"
    ip -n "$hub" link add br0 type bridge && ip -n "$hub" link set br0 up || fail "a bridge in $hub"
    _veth_pair "$v" "${v}b"
    ip link set "${v}b" netns "$hub"
    ip -n "$hub" link set "${v}b" master br0 up
    ip addr add "$ip/24" dev "$v"
    ip link set "$v" up
}
netns_join() {
    local hub=$1 ns=$2 ip=$3 rate=${4:-} v=vh$$n$_NETNS_N
    _NETNS_N=$((_NETNS_N + 1))
    ip netns add "$ns" || fail "ip netns add $ns"
    on_exit "ip netns del '$ns' 2>/dev/null || true"
    _veth_pair "$v" "${v}b"
    ip link set "$v" netns "$ns"
    ip link set "${v}b" netns "$hub"
    ip -n "$hub" link set "${v}b" master br0 up
    ip -n "$ns" addr add "$ip/24" dev "$v"
    ip -n "$ns" link set "$v" up
    ip -n "$ns" link set lo up
    [ -z "$rate" ] || tc -n "$ns" qdisc add dev "$v" root tbf rate "$rate" burst 64kb latency 100ms ||
        fail "tc tbf $rate in $ns"
}

# registry_token REPO [ACTIONS=pull]: prints a Bearer token for REPO from $TOKEN_SERVER, using
# $REGISTRY_CREDS (anonymous when empty).
registry_token() {
    local repo=$1 actions=${2:-pull} uopt=()
    [ -n "${TOKEN_SERVER:-}" ] || fail "registry_token: no token server started"
    [ -n "$REGISTRY_CREDS" ] && uopt=(-u "$REGISTRY_CREDS")
    curl -sf "${uopt[@]}" --max-time 10 \
        "http://$TOKEN_SERVER/token?service=$TOKEN_SERVICE&scope=repository:$repo:$actions" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

# start_badregistry MODE [--upstream HOST:PORT (default $REGISTRY)] [--scope blobs|all]
#                   [--reject-auth] [--only DIGEST]... [--rate BYTES_PER_SEC]
# Starts badregistry.py (see its header for the modes: pass drop-once wrong-bytes truncate
# slow-429 redirect) in front of a running registry. --reject-auth: in redirect mode the blob
# host answers 400 to a request carrying an Authorization header, as S3 does for presigned URLs.
# --only DIGEST: spoil only that blob (repeatable; e.g. a layer, not the config, which is a blob
# too). --rate N: blob bodies are sent at about N bytes/s (any mode).
# Exports BADREG=127.0.0.1:PORT, BADREG_PID, and for redirect mode BADREG_REDIRECT=127.0.0.1:PORT2
# (the blob host). Its stub endpoints: http://$BADREG/_stub/log, /_stub/auth-seen,
# POST /_stub/reset.
start_badregistry() {
    local mode=$1 upstream=${REGISTRY:-} scope=blobs port rport=0 args=()
    shift
    while (($#)); do
        case $1 in
        --upstream) upstream=$2; shift 2 ;;
        --scope) scope=$2; shift 2 ;;
        --reject-auth) args+=(--reject-auth); shift ;;
        --only) args+=(--only "$2"); shift 2 ;;
        --rate) args+=(--rate "$2"); shift 2 ;;
        *) fail "start_badregistry: unknown option $1" ;;
        esac
    done
    [ -n "$upstream" ] || fail "start_badregistry: no upstream registry (start_registry first)"
    port=$(free_port)
    if [ "$mode" = redirect ]; then
        rport=$(free_port)
        args+=(--redirect-port "$rport")
    fi
    start_bg "badregistry-$mode" "$PY" "$LIB_DIR/badregistry.py" --port "$port" --mode "$mode" \
        --upstream "http://$upstream" --scope "$scope" "${args[@]}"
    BADREG_PID=$BG_PID
    wait_port "$port" 15 "$BADREG_PID"
    ((rport)) && wait_port "$rport" 15 "$BADREG_PID"
    BADREG=127.0.0.1:$port
    BADREG_REDIRECT=""
    ((rport)) && BADREG_REDIRECT=127.0.0.1:$rport
    export BADREG BADREG_PID BADREG_REDIRECT
    log "bad registry ($mode) at $BADREG -> $upstream${BADREG_REDIRECT:+, blobs redirected to $BADREG_REDIRECT}"
}

# ---------------------------------------------------------------------------------------------
# images

# _new_bundle_path: a path under $TEST_TMPDIR that does not exist yet (umoci unpack wants that).
_new_bundle_path() {
    local d
    d=$(mktemp -d "$TEST_TMPDIR/bundle.XXXX")
    rmdir "$d"
    echo "$d"
}

_umoci() {
    local out
    out=$(umoci "$@" 2>&1) || fail "umoci $* failed: $out"
}

# build_busybox_image OCI_DIR TAG [--applets "sh ls cat echo"] [--arch ARCH] [--os OS]
#                     [--file PATH=TEXT]... [--cmd CMD]
# A one-layer image: /bin/busybox (busybox-static) and applet symlinks, plus any --file (a
# text file at PATH in the same layer). The OCI layout is created if missing; other tags in it
# are kept. Config: Cmd [CMD] (default /bin/sh), Env PATH=/bin, architecture ARCH.
build_busybox_image() {
    local oci=$1 tag=$2 applets="sh ls cat echo" arch="" os="" cmd=/bin/sh files=() b f a
    shift 2
    while (($#)); do
        case $1 in
        --applets) applets=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        --os) os=$2; shift 2 ;;
        --file) files+=("$2"); shift 2 ;;
        --cmd) cmd=$2; shift 2 ;;
        *) fail "build_busybox_image: unknown option $1" ;;
        esac
    done
    [ -x /bin/busybox ] || fail "/bin/busybox missing (install busybox-static)"
    require umoci
    [ -e "$oci/index.json" ] || _umoci init --layout "$oci"
    _umoci new --image "$oci:$tag"
    b=$(_new_bundle_path)
    _umoci unpack --image "$oci:$tag" "$b"
    mkdir -p "$b/rootfs/bin" "$b/rootfs/tmp" "$b/rootfs/etc"
    chmod 1777 "$b/rootfs/tmp"
    cp /bin/busybox "$b/rootfs/bin/busybox"
    for a in $applets; do
        ln -s busybox "$b/rootfs/bin/$a"
    done
    printf 'root:x:0:0:root:/:/bin/sh\n' >"$b/rootfs/etc/passwd"
    for f in "${files[@]}"; do
        mkdir -p "$(dirname "$b/rootfs/${f%%=*}")"
        printf '%s\n' "${f#*=}" >"$b/rootfs/${f%%=*}"
    done
    _umoci repack --image "$oci:$tag" "$b"
    rm -rf "$b"
    local cfg=(--config.cmd "$cmd" --config.env PATH=/bin)
    [ -n "$arch" ] && cfg+=(--architecture "$arch")
    [ -n "$os" ] && cfg+=(--os "$os")
    _umoci config --image "$oci:$tag" "${cfg[@]}"
}

# build_fixture_image OCI_DIR TAG [--files N] [--seed S]
# Four layers exercising the layer index (mkfixture.py has the exact list):
#   1 busybox base (as build_busybox_image)
#   2 (umoci repack) N=2000 small files of varied sizes incl. empty under /data/dXX/dYY, a 3 MiB
#     random and a 1 MiB zero file, awkward names, symlinks (relative, absolute, dangling, to a
#     dir, self-loop, 200+ char target), hardlinks (incl. setuid and empty ones), char/block
#     devices and a fifo, paths of > 255 chars with a 150-char component, setuid/setgid/sticky
#     and odd modes, uid/gid 1234:5678 and beyond ustar range, mtimes incl. 1980 and 2100,
#     xattrs (user.*, trusted.*, binary, empty, 3000-byte, on dirs and symlinks) and
#     security.capability (setcap cap_net_raw+ep on a busybox copy)
#   3 (umoci repack) whiteouts of a file and of directories, a content change, metadata-only
#     changes (chmod, chown, xattr), type changes (dir->file, file->dir, symlink->file), one
#     name of a hardlink group removed
#   4 (hand-made PAX tar, umoci raw add-layer) an opaque directory (.wh..wh..opq), a file
#     whited out in layer 3 created again, nanosecond mtimes on a dir/file/symlink/hardlink,
#     an xattr from a PAX header, a whiteout of a name that never existed
# What umoci 0.4.7 loses (checked with treecmp, bundle before repack vs umoci unpack): mtimes
# are rounded to the nearest second by repack (layer 4 keeps nanoseconds), and empty-valued
# xattrs are dropped. Devices, fifos, owners, modes, hardlinks, directory and symlink mtimes, and
# all xattrs (user, trusted, security.capability, on dirs and symlinks) survive. Note umoci's
# layer 3 holds dir2file (now a file) followed by a whiteout dir2file/.wh.child under it.
build_fixture_image() {
    local oci=$1 tag=$2 b
    shift 2
    build_busybox_image "$oci" "$tag" --applets "sh ls cat echo stat find"
    b=$(_new_bundle_path)
    _umoci unpack --image "$oci:$tag" "$b"
    "$PY" "$LIB_DIR/mkfixture.py" populate "$b/rootfs" "$@" || fail "mkfixture populate failed"
    _umoci repack --refresh-bundle --image "$oci:$tag" "$b"
    "$PY" "$LIB_DIR/mkfixture.py" modify "$b/rootfs" || fail "mkfixture modify failed"
    _umoci repack --image "$oci:$tag" "$b"
    rm -rf "$b"
    "$PY" "$LIB_DIR/mkfixture.py" extra-layer "$TEST_TMPDIR/layer4.tar"
    _umoci raw add-layer --image "$oci:$tag" "$TEST_TMPDIR/layer4.tar"
    rm -f "$TEST_TMPDIR/layer4.tar"
    _umoci gc --layout "$oci"
}

# build_stress_image OCI_DIR TAG
# Five hand-made PAX layers (mkfixture.py stress-layer N, added with umoci raw add-layer; fully
# deterministic: the same layer digests every time, only the config's creation time differs)
# exercising every OCI layer-merging rule:
#   1 the base: a root "./" entry; types/ (a file, a dir with a subtree, a symlink, a fifo that
#     later layers change type); wh/ (a file, a subtree, a dir with xattrs to be whited out);
#     opq/ (lower entries for layer 2's opaque marker); meta/ (a dir with xattrs whose metadata
#     layer 2 changes); many/ (3000 small files, varied sizes incl. empty and 20 KB); bulk/
#     (2000 files); utf8/ (données/résumé.txt, 日本語/ファイル, an emoji file, an emoji dir);
#     long/ (a 676-byte path of 200-, 200- (100 two-byte chars) and 255-byte components, with a
#     hardlink and a symlink to it); hl/ (a group of 3 links, a file that layer 2 links to, a
#     group of 3 one of which layer 3 replaces, a group of 4 half of which is whited out);
#     content/ (per-layer versions, empty files); setuid/setgid/sticky/7777/0000 modes;
#     uid/gid 65536, 70000, 100000 and 4000000000; char/block devices (incl. 4095,1048575) and a
#     fifo; xattrs (user.*, binary values, security.capability =ep, on files and dirs); POSIX
#     ACLs (acl/granted: 0640, readable by uid 65534 only through its ACL; acl/dir: a default ACL);
#     implicit/a/b/file and implicit/a/sibling with no entries for their parents
#   2 type changes (file->dir with contents, dir->symlink (twice), symlink->dir, file->symlink,
#     fifo->file); whiteouts of a file, a subtree, a dir (re-created in 3), a UTF-8 name, a
#     150-char name at depth, 1000 of bulk/, a hardlink group's subdir, names that never existed
#     (also under missing parents); opq/ opaque, with new entries before and after the marker;
#     an opaque marker in a new dir; meta/ with new mode/owner/mtime/xattrs; hl/cross: a
#     hardlink to layer 1's hl/base; a 6 MiB compressible text file; an entry for implicit/
#   3 back to a file (types/f2d2f); a whited-out file re-created as a dir; wh/recreate re-created
#     with other metadata and contents; more in opq/ and meta/ without entries for them;
#     10 bulk/ files back; hl/repl/y replaced by a new file; hl/base (target of hl/cross)
#     whited out; new xattr sets on a dir and a file; late/implicit/file (implicit parents)
#   4 hardlinks to the replaced hl/repl/y and to hl/cross; types/d2l a dir again
#   5 a second root entry, content/evolve's 5th version, whiteouts in a dir (types/l2d) and in
#     many/, one more file
# umoci 0.4.7 accepts all of it: a hardlink to a file of a lower layer (even one whose first
# name a later layer whites out) and to a path a lower layer replaced (it gets the new file);
# whiteouts of names that never existed, also under missing parents, create nothing. What it
# does (the oracle's rules, asserted by 21-stress-fixture.sh): a directory entry over a
# directory replaces mode, owner, mtime and the whole xattr set (xattrs of the older entry
# that the newer lacks are removed) and keeps the contents; adding or removing entries leaves
# a directory's mtime as its last entry set it; a hardlink entry's own mode/owner/mtime are
# ignored; parents that no layer names are made 0777 & ~umask, root:root, with no xattrs and
# the time of the unpack as mtime (so the mtimes of implicit/a, implicit/a/b, late and
# late/implicit are not comparable; a root with no "./" entry would be the same). Every other
# attribute of the unpacked tree is fixed.
build_stress_image() {
    local oci=$1 tag=$2 n
    require umoci
    [ -e "$oci/index.json" ] || _umoci init --layout "$oci"
    _umoci new --image "$oci:$tag"
    for n in 1 2 3 4 5; do
        "$PY" "$LIB_DIR/mkfixture.py" stress-layer "$n" "$TEST_TMPDIR/stress$n.tar" ||
            fail "mkfixture stress-layer $n failed"
        _umoci raw add-layer --image "$oci:$tag" "$TEST_TMPDIR/stress$n.tar"
        rm -f "$TEST_TMPDIR/stress$n.tar"
    done
    _umoci config --image "$oci:$tag" --config.cmd /zz-last
    _umoci gc --layout "$oci"
}

# manifest_raw REF [--creds U:P]: the manifest (or index) of docker://REF as stored.
manifest_raw() {
    local ref=$1 copt=()
    shift
    [ "${1:-}" = --creds ] && copt=(--creds "$2")
    skopeo inspect --raw --tls-verify=false "${copt[@]}" "docker://$ref"
}

# media_types REF [--creds U:P]: the manifest's mediaType, then one line per layer mediaType
# (or per platform manifest of an index: DIGEST OS/ARCH MEDIATYPE).
media_types() {
    manifest_raw "$@" | "$PY" "$LIB_DIR/ocitool.py" media-types
}

# layer_digests REF [--creds U:P]: the layer digests of the image manifest at REF, one a line,
# lowest layer first.
layer_digests() {
    manifest_raw "$@" | "$PY" -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}

# push_image OCI_DIR TAG REF [--compress gzip|zstd|none] [--creds U:P] [--format oci|v2s2]
#            [--via ocitool|skopeo]
# Pushes OCI_DIR:TAG to REF (127.0.0.1:PORT/repo:tag) with every layer compressed as asked
# (gzip is what umoci wrote), then checks the registry's manifest has the media types wanted.
# The default pusher is ocitool.py (recompress + plain registry API), which stores exactly what
# is asked. --via skopeo uses skopeo copy --dest-compress-format instead (not for none): skopeo
# 1.9 reuses a blob the registry already has for the same layer in another compression, so a
# zstd push after a gzip one of the same image can come out gzip; the check catches that.
# Exports PUSHED_DIGEST (the manifest digest).
push_image() {
    local oci=$1 tag=$2 ref=$3 compress=gzip format=oci creds="" via=ocitool cargs=() want mt raw out
    shift 3
    while (($#)); do
        case $1 in
        --compress) compress=$2; shift 2 ;;
        --creds) creds=$2; shift 2 ;;
        --format) format=$2; shift 2 ;;
        --via) via=$2; shift 2 ;;
        *) fail "push_image: unknown option $1" ;;
        esac
    done
    case $compress in gzip | zstd | none) ;; *) fail "push_image: --compress gzip, zstd or none" ;; esac
    case $format in oci | v2s2) ;; *) fail "push_image: --format oci or v2s2" ;; esac
    [ "$compress" = zstd ] && [ "$format" = v2s2 ] && fail "push_image: zstd needs --format oci"
    [ -n "$creds" ] && cargs=(--creds "$creds")
    require skopeo
    [ "$compress" = zstd ] && require zstd
    if [ "$via" = skopeo ]; then
        [ "$compress" = none ] && fail "push_image: skopeo cannot push uncompressed layers"
        out=$(skopeo copy --insecure-policy --dest-tls-verify=false --format "$format" \
            --dest-compress-format "$compress" ${creds:+--dest-creds "$creds"} \
            "oci:$oci:$tag" "docker://$ref" 2>&1) || fail "skopeo copy to $ref failed: $out"
    else
        local dk=()
        [ "$format" = v2s2 ] && dk=(--docker)
        "$PY" "$LIB_DIR/ocitool.py" recompress "$oci" "$tag" "$tag--$compress" "$compress" ||
            fail "recompressing $oci:$tag to $compress failed"
        "$PY" "$LIB_DIR/ocitool.py" push "$oci" "$tag--$compress" "$ref" "${cargs[@]}" \
            "${dk[@]}" >/dev/null || fail "pushing $oci:$tag ($compress) to $ref failed"
    fi
    local mf=$TEST_TMPDIR/.manifest.$$
    manifest_raw "$ref" "${cargs[@]}" >"$mf" || fail "cannot read back the manifest of $ref"
    raw=$(cat "$mf")
    mt=$("$PY" "$LIB_DIR/ocitool.py" media-types <"$mf")
    case $compress in
    gzip) want='tar[.+]gzip$' ;;
    zstd) want='tar\+zstd$' ;;
    none) want='(layer\.v1\.tar|diff\.tar)$' ;;
    esac
    local layers
    layers=$(printf '%s\n' "$mt" | tail -n +2)
    [ -n "$layers" ] || fail "manifest of $ref has no layers: $raw"
    if printf '%s\n' "$layers" | grep -Ev "$want" >/dev/null; then
        fail "pushed $ref with --compress $compress but layer media types are: $layers"
    fi
    if [ "$format" = v2s2 ]; then
        assert_eq application/vnd.docker.distribution.manifest.v2+json "$(head -1 <<<"$mt")" \
            "manifest media type of $ref"
    fi
    PUSHED_DIGEST=$("$PY" "$LIB_DIR/ocitool.py" digest <"$mf")
    rm -f "$mf"
    export PUSHED_DIGEST
    log "pushed $oci:$tag to $ref ($compress, $format, via $via, $(wc -l <<<"$layers") layers, $PUSHED_DIGEST)"
}

# push_multiplatform REF [--creds U:P]
# Pushes an OCI image index with linux/amd64 and linux/arm64 images (one layer each: busybox and
# /platform holding "linux/amd64" or "linux/arm64", so their layers differ) and checks the
# registry serves it as an index. Exports MULTI_INDEX_DIGEST, MULTI_AMD64_DIGEST,
# MULTI_ARM64_DIGEST (the manifests' digests).
push_multiplatform() {
    local ref=$1 creds="" oci mt out
    shift
    [ "${1:-}" = --creds ] && creds=$2
    oci=$(mktemp -d "$TEST_TMPDIR/multi.XXXX")
    rmdir "$oci"
    build_busybox_image "$oci" amd64 --arch amd64 --file /platform=linux/amd64
    build_busybox_image "$oci" arm64 --arch arm64 --file /platform=linux/arm64
    "$PY" "$LIB_DIR/ocitool.py" mkindex "$oci" multi amd64=linux/amd64 arm64=linux/arm64 ||
        fail "writing the image index failed"
    out=$(skopeo copy --insecure-policy --all --dest-tls-verify=false \
        ${creds:+--dest-creds "$creds"} "oci:$oci:multi" "docker://$ref" 2>&1) ||
        fail "skopeo copy --all to $ref failed: $out"
    local mf=$TEST_TMPDIR/.manifest.$$
    manifest_raw "$ref" ${creds:+--creds "$creds"} >"$mf" || fail "cannot read back the index $ref"
    mt=$("$PY" "$LIB_DIR/ocitool.py" media-types <"$mf")
    assert_eq application/vnd.oci.image.index.v1+json "$(head -1 <<<"$mt")" "media type of $ref"
    MULTI_AMD64_DIGEST=$(awk '$2 == "linux/amd64" { print $1 }' <<<"$mt")
    MULTI_ARM64_DIGEST=$(awk '$2 == "linux/arm64" { print $1 }' <<<"$mt")
    [ -n "$MULTI_AMD64_DIGEST" ] && [ -n "$MULTI_ARM64_DIGEST" ] ||
        fail "index of $ref lacks a platform: $mt"
    assert_ne "$MULTI_AMD64_DIGEST" "$MULTI_ARM64_DIGEST" "platform manifests"
    MULTI_INDEX_DIGEST=$("$PY" "$LIB_DIR/ocitool.py" digest <"$mf")
    rm -f "$mf"
    export MULTI_INDEX_DIGEST MULTI_AMD64_DIGEST MULTI_ARM64_DIGEST
    rm -rf "$oci"
    log "pushed index $ref ($MULTI_INDEX_DIGEST): amd64 $MULTI_AMD64_DIGEST, arm64 $MULTI_ARM64_DIGEST"
}

# umoci_unpack_ref REF DEST [--creds U:P] [--arch ARCH]
# The oracle: what the image at docker://REF looks like unpacked by skopeo + umoci. DEST (must
# not exist) becomes the image's root filesystem. Layers are recompressed to gzip on the way,
# since umoci 0.4.7 cannot read zstd. For an index, --arch picks the platform (default: host).
umoci_unpack_ref() {
    local ref=$1 dest=$2 creds="" arch="" tmp b out
    shift 2
    while (($#)); do
        case $1 in
        --creds) creds=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        *) fail "umoci_unpack_ref: unknown option $1" ;;
        esac
    done
    [ -e "$dest" ] && fail "umoci_unpack_ref: $dest exists"
    require skopeo umoci
    tmp=$(_new_bundle_path)
    b=$(_new_bundle_path)
    out=$(skopeo copy --insecure-policy --src-tls-verify=false ${creds:+--src-creds "$creds"} \
        ${arch:+--override-arch "$arch"} --dest-compress-format gzip \
        "docker://$ref" "oci:$tmp:t" 2>&1) || fail "skopeo copy from $ref failed: $out"
    _umoci unpack --image "$tmp:t" "$b"
    mkdir -p "$(dirname "$dest")"
    mv "$b/rootfs" "$dest"
    rm -rf "$tmp" "$b"
}

# ---------------------------------------------------------------------------------------------
# a real distribution image: Debian 12 minbase + python3, made once per machine

# The Debian mirror apt uses: one-line sources.list, else the first deb822 URIs (not security).
debian_mirror() {
    local u=""
    if [ -n "${AFSP_DEBIAN_MIRROR:-}" ]; then
        echo "$AFSP_DEBIAN_MIRROR"
        return
    fi
    [ -r /etc/apt/sources.list ] &&
        u=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
            /etc/apt/sources.list)
    if [ -z "$u" ]; then
        u=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
            awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }')
    fi
    echo "${u:-http://deb.debian.org/debian}"
}

# build_debian_python_rootfs DIR: debootstrap --variant=minbase --include=python3 bookworm into
# DIR, unless DIR exists (minutes; from the mirror apt uses, or $AFSP_DEBIAN_MIRROR). The log
# goes to DIR.log.
build_debian_python_rootfs() {
    local rootfs=$1 mirror tmp=$1.tmp
    [ -d "$rootfs" ] && return 0
    require debootstrap curl
    mirror=$(debian_mirror)
    curl -fsS -m 30 -o /dev/null "$mirror/dists/bookworm/Release" ||
        fail "the Debian mirror $mirror does not answer (set AFSP_DEBIAN_MIRROR)"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$rootfs")"
    log "debootstrap --variant=minbase --include=python3 bookworm from $mirror (once; minutes)"
    if ! debootstrap --variant=minbase --include=python3 bookworm "$tmp" "$mirror" \
        >"$rootfs.log" 2>&1; then
        tail -n 30 "$rootfs.log" >&2
        fail "debootstrap failed (log: $rootfs.log)"
    fi
    [ -x "$tmp/usr/bin/python3" ] || fail "debootstrap made no /usr/bin/python3"
    mv "$tmp" "$rootfs"
    log "rootfs: $(du -sh "$rootfs" | cut -f1)"
}

# build_oci_of_dir DIR OCI_DIR TAG [umoci config options...]: a one-layer OCI image (umoci,
# gzip) of DIR's contents, unless OCI_DIR exists.
build_oci_of_dir() {
    local dir=$1 oci=$2 tag=$3 tmp=$2.tmp b=$2.bundle.tmp
    shift 3
    [ -e "$oci/index.json" ] && return 0
    require umoci
    rm -rf "$tmp" "$b"
    log "umoci: one-layer image of $dir (once)"
    _umoci init --layout "$tmp"
    _umoci new --image "$tmp:$tag"
    _umoci unpack --image "$tmp:$tag" "$b"
    # tar keeps owners, modes, devices, hardlinks and xattrs
    (cd "$dir" && tar --numeric-owner --xattrs --xattrs-include='*' -cf - .) |
        (cd "$b/rootfs" && tar --numeric-owner --xattrs --xattrs-include='*' -xpf -)
    _umoci repack --image "$tmp:$tag" "$b"
    (($#)) && _umoci config --image "$tmp:$tag" "$@"
    _umoci gc --layout "$tmp"
    rm -rf "$b"
    mv "$tmp" "$oci"
}

# python_image_layout DIR: the cached Debian python3 image (made once) copied to the OCI layout
# DIR, tag py (a copy: push_image writes a tag into the layout).
python_image_layout() {
    local cache=${AFSP_TEST_CACHE:-/var/cache/afsp-test}
    build_debian_python_rootfs "$cache/debian12-python3.rootfs"
    build_debian_python_oci "$cache/debian12-python3.rootfs" "$cache/debian12-python3.oci" py
    cp -a "$cache/debian12-python3.oci" "$1"
}

# build_debian_python_oci ROOTFS OCI_DIR TAG: build_oci_of_dir with python3 as the command.
build_debian_python_oci() {
    build_oci_of_dir "$1" "$2" "$3" --config.cmd /usr/bin/python3 \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
}
