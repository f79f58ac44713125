#!/bin/bash
# afsp run (docs/exec.md): jobs on the debootstrap python image, held by a peer (A) while the
# registry is stopped, run by a second node (B) with real runc, FUSE and cgroups. Output and
# exit status; --env, --workdir, --user; a job's writes in its own scratch only; OOM from the
# kernel's count, not from a status of 137; the cpu quota; ENOSPC past --scratch-size in one
# job only; --net none; no view of the node's data, keys or socket; admission refused, or
# queued first in, first out; twenty jobs on one mount; kill ends a job and its children; the
# mount unmounted once idle past --mount-keep; the node killed with -9 and started again: no
# container, mount, cgroup or scratch left.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-node.sh"

require runc
CACHE=${AFSP_TEST_CACHE:-/var/cache/afsp-test}
T=$TEST_TMPDIR
python_image_layout "$T/oci"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py"
IMG=$REGISTRY/debian@$PUSHED_DIGEST

pa=$(free_port) pb=$(free_port) pp=$(free_port)
A=$T/A B=$T/B
log "without a node, afsp run says so"
expect_fail "$AFSP_BIN" --data "$B" run "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "no node runs on $B"

expect_fail "$AFSP_BIN" --data "$T/R" node --listen 127.0.0.1:0 --cpus 1 --memory 1G --runtime true
assert_contains "$EXPECT_FAIL_OUTPUT" "cannot keep a container after its end" "a runtime without run --keep"

start_node nodeA "$A" "$pa"
"$AFSP_BIN" --data "$A" pull "$IMG" >/dev/null
kill_bg "$REGISTRY_PID"
NODE_ARGS=(--cpus 4 --memory 2G --mount-keep 3 --devices 2 --devices-path /dev/loop%u --publish-range "$pp-$pp" --verify-rate 0)
start_node nodeB "$B" "$pb" "$pa"
PIDB=$BG_PID LOGB=$BG_LOG
NODE_ARGS=()
wait_until 15 has_peers "$B" 1
run() { "$AFSP_BIN" --data "$B" run "$@"; }
afsp() { "$AFSP_BIN" --data "$B" "$@"; }
jobfield() { # JOB FIELD: one field of afsp jobs --json's entry for JOB
    afsp jobs --json | "$PY" -c 'import json,sys
j = [j for j in json.load(sys.stdin)["jobs"] if sys.argv[1] in (j["id"], j.get("name"))][0]
v = j
for k in sys.argv[2].split("."): v = v.get(k, "") if isinstance(v, dict) else ""
print(v)' "$1" "$2"
}
job_state_is() { [ "$(jobfield "$1" state)" = "$2" ]; }
afsp_mounts() { grep " fuse.afsp " /proc/self/mountinfo | grep -c " $B/jobs/mnt/" || true; }

log "a python job on the image a peer holds: its output, its stderr, its status"
st=0
run "$IMG" -- python3 -c 'import sys; print("hello", sys.version_info[0]); print("oops", file=sys.stderr); sys.exit(3)' >"$T/out" 2>"$T/err" || st=$?
assert_eq 3 "$st" "afsp run's exit status"
assert_eq "hello 3" "$(cat "$T/out")" "the job's stdout"
assert_eq "oops" "$(cat "$T/err")" "the job's stderr"
assert_eq 0 "$(counter "$A" bad_chunks)" "bad chunks"
(($(counter "$B" chunks_fetched) > 0)) || fail "B fetched no chunk from A"

log "--env, --workdir, --user, and the image's own command and environment"
out=$(run --env K=v1 --env PATH=/usr/bin:/bin --workdir /tmp --user 1000:1000 "$IMG" -- python3 -c '
import os; print(os.environ["K"], os.environ["PATH"], os.getcwd(), os.getuid(), os.getgid())')
assert_eq "v1 /usr/bin:/bin /tmp 1000 1000" "$out" "env, workdir, user"
out=$(run --user nobody "$IMG" -- python3 -c 'import os; print(os.getuid(), os.getgid())')
assert_eq "65534 65534" "$out" "--user nobody from the image's /etc/passwd"
out=$(echo 'print(6 * 7)' | run "$IMG" 2>&1 || true) # the image's Cmd: python3, stdin empty
assert_eq "" "$out" "the image's command (python3 with no input) printed"

log "a program the image lacks: the job failed (the runtime's words), not exited 1"
st=0
run --name nosuch "$IMG" -- /no/such/program >"$T/out" 2>"$T/err" || st=$?
assert_eq failed "$(jobfield nosuch state)" "a job whose program is not in the image"
assert_contains "$(jobfield nosuch error)" "failed before the job's process started" "its error"
assert_contains "$(cat "$T/err")" "no such file" "the runtime's message on afsp run's stderr"
((st != 0 && st != 1)) || fail "afsp run exited $st for a job that never ran"
expect_fail run --memory 5M "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "6 MiB at least" "--memory under the runtime's need"
assert_eq small "$(run --memory 6M --scratch-size 1M "$IMG" -- echo small)" "a job in 6 MiB"

log "a job's writes land in its scratch, not in the image or another job"
run -d --name w1 "$IMG" -- python3 -c '
import time; open("/etc/hostname", "w").write("changed\n"); open("/mine", "w").write("x")
time.sleep(30)' >/dev/null
wait_until 20 job_state_is w1 running
out=$(run "$IMG" -- python3 -c 'import os; print(open("/etc/hostname").read().strip() != "changed", os.path.exists("/mine"))')
assert_eq "True False" "$out" "another job sees the first job's writes"
for m in "$B"/jobs/mnt/*; do
    [ -e "$m/mine" ] && fail "a job's write reached the image's mount $m"
done
afsp kill w1
afsp wait w1 >/dev/null || true
assert_eq killed "$(jobfield w1 state)" "w1 killed"

log "OOM: the kernel's count, not a status of 137"
st=0
run --memory 64M "$IMG" -- python3 -c 'b = bytearray(128 << 20); print(len(b))' >/dev/null 2>&1 || st=$?
assert_eq 137 "$st" "afsp run's status for a job OOM-killed"
id=$(afsp jobs --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
assert_eq oom "$(jobfield "$id" state)" "state of the job past its memory"
(($(jobfield "$id" oom_kills) >= 1)) || fail "no OOM kill counted"
# PID 1 of the job's namespace cannot be sent SIGKILL from inside: its child is, and it exits so
run -d --name k9 "$IMG" -- python3 -c '
import subprocess, sys; sys.exit(128 - subprocess.run(["sh", "-c", "kill -9 $$"]).returncode)' >/dev/null
afsp wait k9 >/dev/null || true
assert_eq exited "$(jobfield k9 state)" "a job whose process was killed by SIGKILL"
assert_eq 137 "$(jobfield k9 status)" "its status"

log "stats: capacity and what is used (given back once a job's cleanup is done)"
all_free() {
    afsp stats --json | "$PY" -c 'import json,sys
j = json.load(sys.stdin)["stats"]["jobs"]
assert j["capacity"]["cpus"] == 4 and j["capacity"]["memory"] == 2 << 30, j
assert j["used"]["cpus"] == 0 and j["free"]["memory"] == 2 << 30, j'
}
wait_until 10 all_free

log "the mount is unmounted once idle past --mount-keep, and the next job mounts again"
wait_until 30 eval '[ "$(afsp_mounts)" = 0 ]'
out=$(run "$IMG" -- python3 -c 'print("again")')
assert_eq again "$out" "a job after the mount was let go"

log "the mount's process killed with -9 while a job holds the mount: the next job mounts again"
run -d --name holder "$IMG" -- python3 -c 'import time; print("up", flush=True); time.sleep(600)' >/dev/null
wait_until 20 eval '[ "$(afsp logs holder)" = up ]' # python has read all it reads
mpid=$(pgrep -f "mount .* $B/jobs/mnt/")
kill -9 "$mpid"
out=$(run "$IMG" -- python3 -c 'print("remounted")')
assert_eq remounted "$out" "a job after the mount's process died"
assert_contains "$(cat "$LOGB")" "event=mount_lost" "the node's log"
afsp kill holder
afsp wait holder >/dev/null || true

log "cpu: --cpus 0.5 gets at most 0.55 of a core, and the kernel throttles it"
out=$(run --cpus 0.5 "$IMG" -- python3 -c '
import glob, time
t0, c0 = time.time(), time.process_time()
while time.time() - t0 < 2: pass
print(round((time.process_time() - c0) / (time.time() - t0), 3))
for f in glob.glob("/sys/fs/cgroup/cpu*/cpu.stat") + glob.glob("/sys/fs/cgroup/cpu.stat"):
    print(dict(l.split() for l in open(f))["nr_throttled"]); break')
read -r share throttled <<<"$(echo $out)"
"$PY" -c "import sys; s = float(sys.argv[1]); sys.exit(0 if 0 < s <= 0.55 else 1)" "$share" ||
    fail "a job with --cpus 0.5 used $share of a core"
((throttled > 0)) || fail "the job was never throttled (nr_throttled $throttled)"

log "scratch: a write past --scratch-size fails with ENOSPC in that job only"
run -d --name other "$IMG" -- python3 -c '
import time
time.sleep(1.5); open("/big", "wb").write(b"y" * (20 << 20)); print("other wrote", 20 << 20)' >/dev/null
out=$(run --scratch-size 16M --memory 256M "$IMG" -- python3 -c '
import errno
try:
    open("/fill", "wb").write(b"x" * (64 << 20)); print("wrote it all")
except OSError as e:
    print(errno.errorcode[e.errno])')
assert_eq ENOSPC "$out" "a write past the scratch"
afsp wait other >/dev/null
assert_eq "other wrote 20971520" "$(afsp logs other)" "the other job's write"

log "--net none reaches nothing; --net host reaches the node's loopback"
probe='
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("127.0.0.1", int(sys.argv[1]))); print("reached")
except OSError as e:
    print("unreachable")
print(sorted(n for _, n in socket.if_nameindex()))'
assert_eq "unreachable ['lo']" "$(echo $(run "$IMG" -- python3 -c "$probe" "$pb"))" "--net none"
out=$(run --net host "$IMG" -- python3 -c "$probe" "$pb")
assert_contains "$out" "reached" "--net host to the node's port"

log "a job sees nothing of the node: data directory, keys, control socket, /proc/1/root"
out=$(run --user 0 "$IMG" -- python3 -c '
import os, sys
for p in sys.argv[1:]:
    print(p, os.path.exists(p))' "$B" "$B/node.key" "$B/afsp.sock" "/proc/1/root$B" "$T/cluster.key")
assert_eq "$B False
$B/node.key False
$B/afsp.sock False
/proc/1/root$B False
$T/cluster.key False" "$out" "what a job sees of the node"
log "seccomp: root in a job gets EPERM for a new user namespace, keys and mounts; threads work"
out=$(run --user 0 "$IMG" -- python3 -c '
import ctypes, errno, os, threading
libc = ctypes.CDLL(None, use_errno=True)
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")][0])
def call(name, *args):
    r = getattr(libc, name)(*args)
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
print(call("unshare", 0x10000000), call("syscall", 250, 0, 0, 0, 0),  # keyctl on x86-64
      call("mount", b"none", b"/mnt", b"tmpfs", 0, None))
pid = os.fork()  # clone without a new namespace is allowed
if pid == 0: os._exit(7)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
t = threading.Thread(target=print, args=("thread",)); t.start(); t.join()')
assert_eq "2 EPERM EPERM EPERM 7 thread" "$(echo $out)" "seccomp filter: mode, refused calls, fork, threads"
expect_fail run --volume "$B:/data" "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "would show the node's own" "a volume of the data directory"
expect_fail run --volume "/:/host:ro" "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "would show the node's own" "a volume of /"
mkdir -p "$T/vol/sub" && echo model >"$T/vol/weights"
mount -t tmpfs -o size=1m afsp-test-sub "$T/vol/sub" # a mount beneath the volume: read-only too
on_exit "umount -l '$T/vol/sub' 2>/dev/null"
out=$(run --volume "$T/vol:/models:ro" "$IMG" -- python3 -c '
import errno
print(open("/models/weights").read().strip())
for p in ("/models/new", "/models/sub/new"):
    try:
        open(p, "w")
        print("written")
    except OSError as e:
        print(errno.errorcode[e.errno])')
umount "$T/vol/sub"
assert_eq "model EROFS EROFS" "$(echo $out)" "a read-only volume and a mount beneath it"

log "admission: refused when full, or queued and started first in, first out"
wait_until 10 all_free
run -d --name hog --cpus 3.5 "$IMG" -- python3 -c 'import time; time.sleep(60)' >/dev/null
expect_fail run --cpus 1 "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "no room now" "a job past the free cpus"
expect_fail run --cpus 5 --queue "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "more than this node offers" "a job past the node"
run -d --queue --name q1 --cpus 1 "$IMG" -- python3 -c 'print("q1")' >/dev/null
run -d --queue --name q2 --cpus 0.25 "$IMG" -- python3 -c 'print("q2")' >/dev/null
assert_eq queued "$(jobfield q1 state)" "q1 behind the hog"
assert_eq queued "$(jobfield q2 state)" "q2 behind q1, though it would fit"
assert_eq 1 "$(jobfield q2 queue_position)" "q2's place"
afsp kill hog
afsp wait q1 >/dev/null
afsp wait q2 >/dev/null
assert_eq q1 "$(afsp logs q1)" "q1's output"
(($(jobfield q1 at.preparing) <= $(jobfield q2 at.preparing))) || fail "q2 started before q1"

log "twenty jobs of one image at once share one mount"
for i in $(seq 1 20); do
    run -d --queue --name "m$i" --cpus 0.1 --memory 64M --scratch-size 8M "$IMG" -- python3 -c '
import os, time; time.sleep(3); print(len(os.listdir("/usr/lib/python3.11")) > 100)' >/dev/null
done
running_count() { afsp jobs --json | "$PY" -c 'import json,sys
print(sum(j["state"] == "running" for j in json.load(sys.stdin)["jobs"]))'; }
wait_until 60 eval '(($(running_count) == 20))'
assert_eq 1 "$(afsp_mounts)" "afsp mounts while 20 jobs run"
for i in $(seq 1 20); do
    afsp wait "m$i" >/dev/null
    assert_eq True "$(afsp logs "m$i")" "job m$i's output"
done

log "kill ends a job and all its processes"
marker=afsp-test-marker-$$
run -d --name tree "$IMG" -- python3 -c '
import subprocess, sys, time
subprocess.Popen(["sh", "-c", "exec -a %s sleep 600" % sys.argv[1]])
time.sleep(600)' "$marker" >/dev/null
wait_until 20 pgrep -f "$marker"
afsp kill tree
afsp wait tree >/dev/null || true
assert_eq killed "$(jobfield tree state)" "the killed job"
! pgrep -f "$marker" >/dev/null || fail "a child of the killed job lives on"

log "the node killed with -9 and started again: nothing of its jobs is left, and another node's job on this machine runs on"
C=$T/C
NODE_ARGS=(--cpus 1 --memory 1G)
start_node nodeC "$C" "$(free_port)" "$pa"
NODE_ARGS=()
"$AFSP_BIN" --data "$C" run -d --name cjob "$IMG" -- python3 -c 'import time; time.sleep(120)' >/dev/null
c_running() { [ "$("$AFSP_BIN" --data "$C" jobs --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["state"])')" = running ]; }
wait_until 30 c_running
run -d --name orphan "$IMG" -- python3 -c '
import subprocess, sys, time
subprocess.Popen(["sh", "-c", "exec -a %s sleep 600" % sys.argv[1]])
time.sleep(600)' "$marker" >/dev/null
wait_until 20 pgrep -f "$marker"
id=$(jobfield orphan id)
[ -n "$(find /sys/fs/cgroup -path "*/afsp/$id" 2>/dev/null || true)" ] ||
    fail "the running job has no cgroup named afsp/$id"
kill -9 "$PIDB"
wait "$PIDB" 2>/dev/null || true
pgrep -f "$marker" >/dev/null || fail "the job did not outlive its node (nothing to clean)"
[ -d "$B/jobs/$id/root/rootfs" ] || fail "no root left to clean"
# the node comes back with every duration divided by 120 (AFSP_TEST_TIME_DIVISOR), to sit idle
# past them all below; B keeps only the chunks its jobs read (--verify-rate 0)
NODE_ARGS=(--cpus 4 --memory 2G --mount-keep 3 --devices 2 --devices-path /dev/loop%u --publish-range "$pp-$pp" --verify-rate 0)
AFSP_TEST_TIME_DIVISOR=120 start_node nodeB2 "$B" "$pb" "$pa"
NODE_ARGS=()
! pgrep -f "$marker" >/dev/null || fail "the orphan job's processes live on after the restart"
assert_eq 0 "$(afsp_mounts)" "afsp mounts after the restart"
! grep -q " $B/jobs" /proc/self/mountinfo || fail "a job's mount is left: $(grep " $B/jobs" /proc/self/mountinfo)"
assert_eq "" "$(ls "$B/runc")" "containers in the runtime's state after the restart"
assert_eq "mnt" "$(ls "$B/jobs")" "job directories after the restart"
left=$(find /sys/fs/cgroup -path "*/afsp/$id" 2>/dev/null || true)
assert_eq "" "$left" "the orphan job's cgroups"
out=$(run "$IMG" -- python3 -c 'print("after")')
assert_eq after "$out" "a job after the restart"
c_running || fail "B's restart touched node C's job"
cid=$("$AFSP_BIN" --data "$C" jobs --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
[ -n "$(find /sys/fs/cgroup -path "*/afsp/$cid" 2>/dev/null || true)" ] || fail "node C's job lost its cgroup"
"$AFSP_BIN" --data "$C" kill cjob
"$AFSP_BIN" --data "$C" wait cjob >/dev/null || true

log "after the cluster sat idle twice its longest timeout (10 s at 1/120), a job reads what no job read"
read -r present total <<<"$(chunks "$B")"
((present < total)) || fail "B holds every chunk already ($present of $total): nothing to fetch"
sleep 10 # the idle time itself, not a wait for an event
walk='
import hashlib, os, sys
h = hashlib.sha256()
root = sys.argv[1]
for d, dirs, files in os.walk(root + "/usr/lib/python3.11"):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p):
            h.update(os.path.relpath(p, root).encode() + open(p, "rb").read())
print(h.hexdigest())'
exp=$("$PY" -c "$walk" "$CACHE/debian12-python3.rootfs")
got=$(run "$IMG" -- python3 -c "$walk" /)
assert_eq "$exp" "$got" "the python library's bytes, read by a job after the idle"
read -r present2 total <<<"$(chunks "$B")"
((present2 > present)) || fail "the job fetched no chunk after the idle ($present2 of $total)"
assert_eq 0 "$(counter "$B" fetches_failed)" "B's failed fetches after the idle"

wait_until 10 all_free
log "device slots: a job sees its slots' devices and no other, and their numbers"
devprobe='
import errno, os
print(os.environ.get("CUDA_VISIBLE_DEVICES"), sorted(d for d in os.listdir("/dev") if d.startswith("loop")))
for n in range(2):
    p = "/dev/loop%d" % n
    if not os.path.exists(p):
        os.mknod(p, 0o600 | 0o60000, os.makedev(7, n))  # CAP_MKNOD: made, but not allowed
    try:
        os.close(os.open(p, os.O_RDONLY)); print(p, "opened")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
import time; time.sleep(float(os.environ.get("HOLD", "0")))'
run -d --name dev0 --devices 1 --env HOLD=5 "$IMG" -- python3 -c "$devprobe" >/dev/null
wait_until 20 job_state_is dev0 running
out=$(run --devices 1 "$IMG" -- python3 -c "$devprobe")
assert_eq "1 ['loop1']
/dev/loop0 EPERM
/dev/loop1 opened" "$out" "the second job's devices"
afsp wait dev0 >/dev/null
assert_eq "0 ['loop0']
/dev/loop0 opened
/dev/loop1 EPERM" "$(afsp logs dev0)" "the first job's devices"
expect_fail run --devices 3 "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "more than this node offers" "three slots of two"

wait_until 10 all_free
log "--publish: a job's port on its own loopback, reached through the node's port"
mkdir -p "$T/www" && echo served >"$T/www/index.txt"
run -d --name web --publish 8080 --volume "$T/www:/www:ro" "$IMG" -- \
    python3 -m http.server 8080 --bind 127.0.0.1 --directory /www >/dev/null 2>"$T/err"
assert_contains "$(cat "$T/err")" "its port 8080 is the node's port $pp" "what afsp run says"
assert_eq "$pp" "$(jobfield web ports | "$PY" -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())[0]["host"])')" "the port in afsp jobs"
served() { [ "$(curl -fsS -m 5 "http://127.0.0.1:$pp/index.txt" 2>/dev/null)" = served ]; }
wait_until 20 served
expect_fail run --publish 80 "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "no free port in the node's publish range" "a second job, the range taken"
expect_fail run --publish 80 --net host "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "needs --net none" "--publish with --net host"
afsp kill web
afsp wait web >/dev/null || true
! curl -fsS -m 5 "http://127.0.0.1:$pp/index.txt" >/dev/null 2>&1 || fail "the port answers after its job ended"
run -d --name web2 --publish 8081 "$IMG" -- python3 -c 'import time; time.sleep(1)' >/dev/null
afsp wait web2 >/dev/null
assert_eq exited "$(jobfield web2 state)" "a job on the port given back"

log "a job's output is kept up to 64 MiB a stream; the rest is dropped and said"
run -d --name loud "$IMG" -- python3 -c '
import sys
chunk = b"z" * (1 << 20)
for _ in range(70): sys.stdout.buffer.write(chunk)
print("done", file=sys.stderr)' >/dev/null
afsp wait loud >/dev/null
assert_eq $((64 << 20)) "$(stat -c %s "$B/jobs/$(jobfield loud id)/out")" "the job's stdout file"
assert_contains "$(cat "$B/jobs/$(jobfield loud id)/err")" "done" "its stderr"
assert_contains "$(cat "$B/jobs/$(jobfield loud id)/err")" "wrote 6291456 bytes more to its stdout" "the note"

log "logs -f follows a running job until it ends"
run -d --name talker "$IMG" -- python3 -u -c '
import sys, time
for i in range(3):
    print("line", i); print("err", i, file=sys.stderr); time.sleep(0.3)' >/dev/null
out=$(afsp logs -f talker 2>"$T/err")
assert_eq "line 0
line 1
line 2" "$out" "logs -f's stdout"
assert_eq "err 0
err 1
err 2" "$(cat "$T/err")" "logs -f's stderr"
assert_eq exited "$(jobfield talker state)" "the job logs -f followed to its end"
