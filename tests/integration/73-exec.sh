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

require runc python3
CACHE=${AFSP_TEST_CACHE:-/var/cache/afsp-test}
T=$TEST_TMPDIR
build_debian_python_rootfs "$CACHE/debian12-python3.rootfs"
build_debian_python_oci "$CACHE/debian12-python3.rootfs" "$CACHE/debian12-python3.oci" py
cp -a "$CACHE/debian12-python3.oci" "$T/oci"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py"
IMG=$REGISTRY/debian@$PUSHED_DIGEST

pa=$(free_port) pb=$(free_port)
A=$T/A B=$T/B
log "without a node, afsp run says so"
expect_fail "$AFSP_BIN" --data "$B" run "$IMG" -- true
assert_contains "$EXPECT_FAIL_OUTPUT" "no node runs on $B"

start_node nodeA "$A" "$pa"
"$AFSP_BIN" --data "$A" pull "$IMG" >/dev/null
kill_bg "$REGISTRY_PID"
NODE_ARGS=(--cpus 2 --memory 2G --mount-keep 3)
start_node nodeB "$B" "$pb" "$pa"
PIDB=$BG_PID
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
afsp_mounts() { grep -c " fuse.afsp " /proc/self/mountinfo || true; }

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

log "stats: capacity and what is used"
afsp stats --json | "$PY" -c 'import json,sys
j = json.load(sys.stdin)["stats"]["jobs"]
assert j["capacity"]["cpus"] == 2 and j["capacity"]["memory"] == 2 << 30, j
assert j["used"]["cpus"] == 0 and j["free"]["memory"] == 2 << 30, j' || fail "stats' jobs section"

log "the mount is unmounted once idle past --mount-keep, and the next job mounts again"
wait_until 30 eval '[ "$(afsp_mounts)" = 0 ]'
out=$(run "$IMG" -- python3 -c 'print("again")')
assert_eq again "$out" "a job after the mount was let go"
