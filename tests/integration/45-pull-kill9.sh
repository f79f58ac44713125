# The store survives SIGKILL at any moment of a pull. The fixture image (gzip and zstd, 4 layers,
# ~12 MB) is pulled through badregistry.py in pass mode with a rate limit, so that a pull takes
# a few seconds, and killed with SIGKILL: at once, after a few ms, when its first temporary file
# appears, at growing fractions of the bytes it has to fetch, the moment a new blob file appears
# (renamed in, commit in flight), and the moment a download is complete (sync, index, commit).
# After each kill, with no repair step: `afsp layers` and `afsp images` open the store; every
# layer listed is complete and its blob file exists with the listed size; at most one blob file
# has no record (a commit cut short, removed by the next writer); the next pull that gets going
# sweeps the temporary files of dead processes. The cache limit is tight (1.5 images), so a
# reservation of a killed pull that was not dropped would make a later pull fail. At the end each
# image is pulled to completion and extracted (compared with umoci), DATA/tmp is empty, and there
# is one blob file per layer.
. "$(dirname "$0")/lib.sh"

T=$TEST_TMPDIR
export DOCKER_CONFIG=$T/docker-none
mkdir -p "$DOCKER_CONFIG"
ITERATIONS=${KILL9_ITERATIONS:-12} # more to hunt for bugs by hand
RATE=$((5 << 20)) # bytes/s: a whole image takes about 2.5 s

# killer.py: runs a command (afsp pull), kills it with SIGKILL when a condition on DATA holds,
# and prints what it saw as JSON. Conditions (MODE ARG):
#   now 0          at once                      delay SECS    after SECS
#   tmpfile 0      a temporary file of the pull exists
#   frac F         the pull's bytes on disk (its temporary files + new blob files) >= F * REMAINING
#   newblob N      N new blob files have appeared in DATA/blobs/sha256
#   tmpfull 0      a temporary file has its layer's full size (downloaded; sync/index/commit next)
# If the pull exits first, it is not killed. Bounded by 60 s (then killed, "timeout": true).
cat >"$T/killer.py" <<'EOF'
import json, os, signal, subprocess, sys, time
data, mode, arg, remaining, sizes_file = sys.argv[1:6]
cmd = sys.argv[sys.argv.index("--") + 1:]
arg, remaining = float(arg), int(remaining)
sizes = {}
for line in open(sizes_file):
    d, s = line.split()
    sizes[d[len("sha256:"):][:16]] = int(s)
tmpd, blobd = os.path.join(data, "tmp"), os.path.join(data, "blobs", "sha256")

def files(d):
    out = {}
    try:
        for e in os.scandir(d):
            try:
                out[e.name] = e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return out

blobs0 = set(files(blobd))
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(data + ".pull.out", "w"),
                     stderr=open(data + ".pull.err", "w"))
def on_term(*_):
    p.kill()
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
tag = ".%d." % p.pid
t0 = time.monotonic()
seen = {}

def state():
    tmp = {n: s for n, s in files(tmpd).items() if tag in n}
    new = {n: s for n, s in files(blobd).items() if n not in blobs0}
    return tmp, new

def ready():
    if mode == "now":
        return True
    if mode == "delay":
        return time.monotonic() - t0 >= arg
    tmp, new = state()
    seen["tmp"], seen["new"] = tmp, new
    if mode == "tmpfile":
        return bool(tmp)
    if mode == "frac":
        return sum(tmp.values()) + sum(new.values()) >= arg * remaining
    if mode == "newblob":
        return len(new) >= arg
    if mode == "tmpfull":
        return any(sizes.get(n.split(".")[0]) == s for n, s in tmp.items())
    raise SystemExit("unknown mode " + mode)

killed = timeout = False
while p.poll() is None:
    if ready():
        p.send_signal(signal.SIGKILL)
        killed = True
        break
    if time.monotonic() - t0 > 60:
        p.send_signal(signal.SIGKILL)
        killed = timeout = True
        break
    time.sleep(0.0005)
rc = p.wait()
tmp, new = state()
print(json.dumps({"pid": p.pid, "rc": rc, "killed": killed and rc == -signal.SIGKILL,
                  "timeout": timeout, "secs": round(time.monotonic() - t0, 3),
                  "progress": sum(tmp.values()) + sum(new.values()),
                  "tmp": sorted(tmp), "new_blobs": sorted(new)}))
EOF

# check_store DATA [PID]: the store opens read-only with no repair, and what it lists is whole.
# Every layer is complete, with its blob file at the listed size; at most one blob file has no
# record; each image's layersPresent agrees with the layers. With PID (a pull just killed): if it
# had created a temporary file, it had swept those of the dead processes before it, so every
# file in DATA/tmp is its own.
check_store() {
    local d=$1 pid=${2:-} layers images
    layers=$("$AFSP_BIN" --data "$d" layers --json 2>"$T/check.err") ||
        fail "afsp layers failed after a kill: $(cat "$T/check.err")"
    images=$("$AFSP_BIN" --data "$d" images --json 2>"$T/check.err") ||
        fail "afsp images failed after a kill: $(cat "$T/check.err")"
    "$PY" - "$d" "$pid" "$layers" "$images" <<'EOF' || fail "store $d is not consistent (see above)"
import json, os, sys
d, pid, layers, images = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
blobd = os.path.join(d, "blobs", "sha256")
errs, listed = [], set()
for l in layers:
    h = l["digest"][len("sha256:"):]
    listed.add(h)
    if not l["complete"] or l["chunksPresent"] != l["chunks"] or l["chunks"] < 1:
        errs.append("layer %s listed incomplete: %s" % (h[:12], l))
    p = os.path.join(blobd, h)
    if not os.path.isfile(p):
        errs.append("layer %s listed but its blob file is missing" % h[:12])
    elif os.path.getsize(p) != l["size"]:
        errs.append("layer %s: blob file has %d bytes, listed size %d" % (h[:12], os.path.getsize(p), l["size"]))
orphans = [n for n in os.listdir(blobd) if n not in listed]
if len(orphans) > 1:
    errs.append("%d blob files without a layer record: %s" % (len(orphans), orphans))
for im in images:
    n = sum(1 for x in im["layers"] if x[len("sha256:"):] in listed)
    if n != im["layersPresent"]:
        errs.append("image %s: layersPresent %d, but %d of its layers are listed" % (im["reference"], im["layersPresent"], n))
tmp = os.listdir(os.path.join(d, "tmp"))
if pid and any(".%s." % pid in n for n in tmp):
    other = [n for n in tmp if ".%s." % pid not in n]
    if other:
        errs.append("pull %s got going but left temporary files of dead processes: %s" % (pid, other))
for e in errs:
    print("check_store: " + e)
print("store: %d layers, %d images, %d orphan blob(s), %d temporary file(s)" % (len(layers), len(images), len(orphans), len(tmp)))
sys.exit(1 if errs else 0)
EOF
}

# ---- images -----------------------------------------------------------------------------------
start_registry
REG=$REGISTRY
build_fixture_image "$T/oci" fixture
build_busybox_image "$T/oci" other --file /etc/motd=other
push_image "$T/oci" fixture "$REG/fx:gzip" --compress gzip
push_image "$T/oci" fixture "$REG/fx:zstd" --compress zstd
push_image "$T/oci" other "$REG/other:1"
umoci_unpack_ref "$REG/fx:gzip" "$T/fx-root"
# the layers' digests and sizes, one "DIGEST SIZE" a line
for c in gzip zstd; do
    manifest_raw "$REG/fx:$c" | "$PY" -c '
import json, sys
for l in json.load(sys.stdin)["layers"]:
    print(l["digest"], l["size"])' >"$T/sizes-$c"
done
cat "$T/sizes-gzip" "$T/sizes-zstd" >"$T/sizes-all"
# the cache limit: 1.5 times the larger image's reservation (blob + index allowance per layer)
LIMIT=$("$PY" -c '
import sys
def allowance(f):
    return sum(s + s // 16 + (64 << 10) for s in (int(l.split()[1]) for l in open(f)))
print(max(allowance(f) for f in sys.argv[1:]) * 3 // 2)' "$T/sizes-gzip" "$T/sizes-zstd")
log "layer sizes: gzip $(awk '{print $2}' "$T/sizes-gzip" | paste -sd+), zstd $(awk '{print $2}' "$T/sizes-zstd" | paste -sd+); cache limit $LIMIT"
start_badregistry pass --rate "$RATE"

D=$T/data
afsp() { "$AFSP_BIN" --data "$D" --cache-max-bytes "$LIMIT" "$@"; }
afsp pull "$REG/other:1" >/dev/null || fail "pulling the small image first failed"

# remaining C: bytes of image fx:C's layers the store lacks
remaining() {
    afsp layers --json | "$PY" -c '
import json, sys
have = {l["digest"] for l in json.load(sys.stdin) if l["complete"]}
print(sum(int(s) for d, s in (l.split() for l in open(sys.argv[1])) if d not in have))' "$T/sizes-$1"
}

# ---- kill loop --------------------------------------------------------------------------------
SCHEDULE=("now 0" "delay 0.01" "delay 0.05" "tmpfile 0" "frac 0.1" "newblob 1" "frac 0.3"
    "tmpfull 0" "frac 0.5" "newblob 2" "frac 0.7" "frac 0.9")
killed=0
for ((i = 0; i < ITERATIONS; i++)); do
    c=$( ((i % 2)) && echo zstd || echo gzip)
    read -r mode arg <<<"${SCHEDULE[$((i % ${#SCHEDULE[@]}))]}"
    rem=$(remaining "$c")
    if ((rem == 0)); then
        log "fx:$c is complete: prune --percent 100 first"
        afsp prune --percent 100 || fail "prune failed"
        check_store "$D"
        rem=$(remaining "$c")
        ((rem > 0)) || fail "prune --percent 100 left fx:$c complete"
    fi
    res=$("$PY" "$T/killer.py" "$D" "$mode" "$arg" "$rem" "$T/sizes-all" -- \
        "$AFSP_BIN" --data "$D" --cache-max-bytes "$LIMIT" pull "$BADREG/fx:$c") ||
        fail "killer.py failed"
    log "iteration $i: fx:$c ($rem bytes to fetch), kill at $mode $arg: $res"
    IFS=' ' read -r rc was_killed timed_out pid <<<"$("$PY" -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["rc"], int(r["killed"]), int(r["timeout"]), r["pid"])' "$res")"
    ((timed_out == 0)) || fail "iteration $i: the pull was still running after 60 s"
    if ((was_killed)); then
        killed=$((killed + 1))
    else
        assert_eq 0 "$rc" "iteration $i: a pull that was not killed must succeed ($(cat "$D.pull.err"))"
        assert_eq "" "$(ls -A "$D/tmp")" "iteration $i: temporary files after a completed pull"
    fi
    check_store "$D" "$pid"
done
log "$killed of $ITERATIONS pulls were killed mid-way"
((killed >= ITERATIONS * 2 / 3)) || fail "only $killed of $ITERATIONS pulls were killed before they finished"

# ---- pull to completion -----------------------------------------------------------------------
log "before the final pulls, DATA/tmp holds: $(ls -A "$D/tmp" | tr '\n' ' ')"
for c in gzip zstd; do
    log "final pull of fx:$c"
    out=$(afsp pull "$BADREG/fx:$c" 2>"$T/pull.err") || fail "final pull of fx:$c failed: $(cat "$T/pull.err")"
    assert_contains "$out" "$BADREG/fx:$c sha256:" "final pull output"
    check_store "$D"
    assert_eq "" "$(ls -A "$D/tmp")" "DATA/tmp after the final pull of fx:$c"
    nlayers=$(afsp layers --json | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
    assert_eq "$nlayers" "$(find "$D/blobs/sha256" -type f | wc -l)" "blob files vs layers (no orphan)"
    afsp layers --json | "$PY" -c '
import json, sys
have = {l["digest"] for l in json.load(sys.stdin) if l["complete"]}
want = [l.split()[0] for l in open(sys.argv[1])]
missing = [d for d in want if d not in have]
assert not missing, "layers of the image missing after its pull: %s" % missing' "$T/sizes-$c" ||
        fail "fx:$c is not complete after its final pull"
    afsp inspect extract "$BADREG/fx:$c" "$T/out-$c" || fail "extract of fx:$c failed"
    assert_tree_eq "$T/fx-root" "$T/out-$c" -q
    rm -rf "$T/out-$c"
done
log "kill -9 ok"
