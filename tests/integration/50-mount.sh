#!/bin/bash
# afsp mount: the fixture image (every kind of entry, 4 layers) mounted from gzip, zstd and plain
# layers equals `umoci unpack` of it; the mount is read-only; mount and umount keep their
# contract (ready on return, a separate process, clean unmount on umount and on SIGTERM, a clear
# line and non-zero exit for every bad input, --foreground for supervisors).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-mount.sh"

start_registry
build_fixture_image "$TEST_TMPDIR/oci" fx
D=$TEST_TMPDIR/data
M=$TEST_TMPDIR/mnt
afsp() { "$AFSP_BIN" --data "$D" "$@"; }

for c in gzip zstd none; do
    push_image "$TEST_TMPDIR/oci" fx "$REGISTRY/fx:$c" --compress "$c"
done
umoci_unpack_ref "$REGISTRY/fx:gzip" "$TEST_TMPDIR/oracle"

for c in gzip zstd none; do
    # not pulled yet: mount pulls it first
    mount_image "$D" "$REGISTRY/fx:$c" "$M"
    assert_tree_eq "$TEST_TMPDIR/oracle" "$M"
    pid=$(mount_pid "$D" "$M")
    alive "$pid" || fail "no mount process"
    assert_ne "$(ps -o sid= -p $$ | tr -d ' ')" "$(ps -o sid= -p "$pid" | tr -d ' ')" \
        "the mount process has its own session"
    afsp umount "$M"
    ! is_mounted "$M" || fail "still mounted after umount"
    ! alive "$pid" || fail "mount process $pid still running after umount"
    assert_eq "" "$(ls -A "$M")" "the mount point is empty again"
    log "$c: mounted tree equals umoci unpack; unmounted cleanly"
done

log "read-only: every write fails with EROFS"
mount_image "$D" "$REGISTRY/fx:gzip" "$M"
f=$(cd "$M" && find . -type f -size +1k -print -quit)
for cmd in "touch '$M/new'" "mkdir '$M/newdir'" "rm '$M/$f'" "sh -c 'echo x >> \"$M/$f\"'" \
    "ln '$M/$f' '$M/link'" "ln -s x '$M/sym'" "mv '$M/$f' '$M/moved'" "chmod 600 '$M/$f'" \
    "truncate -s 0 '$M/$f'" "setfattr -n user.x -v y '$M/$f'" "mknod '$M/fifo2' p"; do
    out=$(eval "$cmd" 2>&1) && fail "succeeded on a read-only mount: $cmd"
    assert_contains "$out" "Read-only file system" "$cmd"
done
cmp "$M/$f" "$TEST_TMPDIR/oracle/$f" || fail "$f changed"

log "bad input: one clear line and a non-zero exit each"
expect_fail afsp mount "$REGISTRY/fx:gzip" "$M"
assert_contains "$EXPECT_FAIL_OUTPUT" "already mounted there"
expect_fail afsp mount "$REGISTRY/fx:gzip" "$TEST_TMPDIR/nonexistent"
assert_contains "$EXPECT_FAIL_OUTPUT" "No such file or directory"
touch "$TEST_TMPDIR/afile"
expect_fail afsp mount "$REGISTRY/fx:gzip" "$TEST_TMPDIR/afile"
assert_contains "$EXPECT_FAIL_OUTPUT" "not a directory"
mkdir -p "$TEST_TMPDIR/full" && touch "$TEST_TMPDIR/full/x"
expect_fail afsp mount "$REGISTRY/fx:gzip" "$TEST_TMPDIR/full"
assert_contains "$EXPECT_FAIL_OUTPUT" "not empty"
mkdir -p "$TEST_TMPDIR/m2"
expect_fail afsp mount "$REGISTRY/fx:nosuchtag" "$TEST_TMPDIR/m2"
assert_contains "$EXPECT_FAIL_OUTPUT" "cannot mount $REGISTRY/fx:nosuchtag"
assert_eq 1 "$(printf '%s\n' "$EXPECT_FAIL_OUTPUT" | wc -l)" "one line"
! is_mounted "$TEST_TMPDIR/m2" || fail "mounted after a failure"
expect_fail afsp mount "not a reference!" "$TEST_TMPDIR/m2"
assert_contains "$EXPECT_FAIL_OUTPUT" "invalid image reference"
expect_fail afsp umount "$TEST_TMPDIR/m2"
assert_contains "$EXPECT_FAIL_OUTPUT" "nothing is mounted there"
expect_fail afsp umount /proc
assert_contains "$EXPECT_FAIL_OUTPUT" "not an afsp mount"
set +e
afsp mount "$REGISTRY/fx:gzip" >/dev/null 2>&1
assert_eq 2 $? "a usage error exits 2"
afsp mount --cache-mem 12 "$REGISTRY/fx:gzip" "$TEST_TMPDIR/m2" >/dev/null 2>&1
assert_eq 2 $? "a bad --cache-mem exits 2"
set -e
afsp mount --help | grep -q -- "--prefetch FILE" || fail "mount --help"
afsp umount --help | grep -q "DIR" || fail "umount --help"

log "SIGTERM unmounts and exits cleanly"
pid=$(mount_pid "$D" "$M")
kill -TERM "$pid"
wait_until 10 eval "! alive $pid"
! is_mounted "$M" || fail "still mounted after SIGTERM"
assert_contains "$(cat "$(mount_log "$D" "$M")")" "unmounted $(realpath "$M")"

log "--foreground: serves in front until unmounted"
start_bg fg "$AFSP_BIN" --data "$D" mount --foreground "$REGISTRY/fx:zstd" "$M"
fgpid=$BG_PID
wait_until 20 is_mounted "$M"
cmp "$M/$f" "$TEST_TMPDIR/oracle/$f" || fail "foreground mount reads wrong"
afsp umount "$M"
wait "$fgpid" || fail "the foreground mount exited with status $?"
! is_mounted "$M" || fail "still mounted"

log "evicted layers are pulled again by mount"
afsp prune --percent 100 >/dev/null
mount_image "$D" "$REGISTRY/fx:gzip" "$M"
assert_tree_eq "$TEST_TMPDIR/oracle" "$M"
afsp umount "$M"

log "a layer the store lists but cannot read: one line, nothing mounted"
blob=$(ls -S "$D"/blobs/sha256/* | sed -n 1p)
mv "$blob" "$TEST_TMPDIR/saved-blob"
expect_fail afsp mount "$REGISTRY/fx:gzip" "$M"
assert_contains "$EXPECT_FAIL_OUTPUT" "cannot mount $REGISTRY/fx:gzip: layer sha256:"
assert_eq 1 "$(printf '%s\n' "$EXPECT_FAIL_OUTPUT" | wc -l)" "one line"
! is_mounted "$M" || fail "mounted without a layer"
mv "$TEST_TMPDIR/saved-blob" "$blob"

log "a mounted image's layers are not evicted; once unmounted they are"
mount_image "$D" "$REGISTRY/fx:gzip" "$M"
afsp pull "$REGISTRY/fx:zstd" >/dev/null
out=$(afsp prune --percent 100)
for l in $(layer_digests "$REGISTRY/fx:gzip"); do
    afsp layers | grep -q "${l:7:12}" || fail "layer $l of the mounted image was evicted ($out)"
done
for l in $(layer_digests "$REGISTRY/fx:zstd"); do
    ! afsp layers | grep -q "${l:7:12}" || fail "layer $l of an unmounted image was kept ($out)"
done
assert_tree_eq "$TEST_TMPDIR/oracle" "$M"
afsp umount "$M"
afsp prune --percent 100 >/dev/null
assert_eq "" "$(afsp layers | tail -n +2)" "every layer evicted after the unmount"

log "a mount point swapped for a symlink once afsp has opened it: nothing is mounted elsewhere"
# P is a directory its owner can write; the moment afsp opens P/mnt (inotify IN_OPEN), the
# watcher renames it away and puts a symlink to $T/target in its place. Mounting by path after
# the check followed the symlink: root's mount (suid, dev) landed where the user chose.
P=$TEST_TMPDIR/p
mkdir -p "$P/mnt" "$TEST_TMPDIR/target"
on_exit "_unmount_at_exit '$TEST_TMPDIR/target'; _unmount_at_exit '$P/mnt.orig'"
mkfifo "$TEST_TMPDIR/swap.fifo"
start_bg swapper timeout 60 "$PY" -c '
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
IN_OPEN = 0x20
if fd < 0 or libc.inotify_add_watch(fd, sys.argv[1].encode(), IN_OPEN) < 0:
    sys.exit("inotify: " + os.strerror(ctypes.get_errno()))
with open(sys.argv[3], "w") as f:
    f.write("ready\n")
os.read(fd, 4096)
os.rename(sys.argv[1], sys.argv[1] + ".orig")
os.symlink(sys.argv[2], sys.argv[1])
print("swapped", flush=True)' "$P/mnt" "$TEST_TMPDIR/target" "$TEST_TMPDIR/swap.fifo"
swapper=$BG_PID swap_log=$BG_LOG
read -r -t 20 line <"$TEST_TMPDIR/swap.fifo" || fail "the watcher did not start"
rc=0
out=$(afsp mount "$REGISTRY/fx:gzip" "$P/mnt" 2>&1) || rc=$?
wait "$swapper" || fail "the watcher failed: $(cat "$swap_log")"
! is_mounted "$TEST_TMPDIR/target" || fail "the mount followed the swapped-in symlink"
if [ "$rc" = 0 ]; then
    is_mounted "$P/mnt.orig" || fail "afsp mount succeeded but the checked directory is not mounted"
    afsp umount "$P/mnt.orig"
else
    assert_contains "$out" "cannot mount on $P/mnt: it changed while it was checked"
fi
log "swapped mount point: exit $rc ($out)"
