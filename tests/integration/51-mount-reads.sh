#!/bin/bash
# afsp mount, the read path: the stress image (5 layers, every layer rule) mounted from gzip,
# zstd and plain layers equals `umoci unpack`; real programs run from the mount through chroot
# and print what they print on the unpacked tree; many concurrent readers, at random offsets and
# through a cache much smaller than the image, get the right bytes; a corrupted chunk gives EIO,
# never wrong data; --prefetch and --preload do their work ahead of the readers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
M=$T/mnt
start_registry
build_stress_image "$T/oci" stress
build_busybox_image "$T/oci" bb --applets "sh ls cat echo wc find sort sha256sum grep head stat readlink"
for c in gzip zstd none; do
    push_image "$T/oci" stress "$REGISTRY/stress:$c" --compress "$c"
done
push_image "$T/oci" bb "$REGISTRY/bb:1"
umoci_unpack_ref "$REGISTRY/stress:gzip" "$T/oracle"
R=$T/oracle

for c in gzip zstd none; do
    mount_image "$T/data" "$REGISTRY/stress:$c" "$M"
    # as in 21-stress-fixture: umoci stamps implicit directories with the time of the unpack
    assert_tree_eq "$R" "$M" --ignore dirmtime
    assert_tree_eq "$R" "$M" --exclude implicit/a --exclude late
    "$AFSP_BIN" --data "$T/data" umount "$M"
    log "$c: the mounted stress image equals umoci unpack"
done

log "POSIX ACLs are enforced; xattrs the image never has answer EOPNOTSUPP (ENOTSUP: the same number)"
# nobody_reads DIR NAME: DIR/NAME read as uid/gid 65534 with no groups (from inside DIR: the
# test's directories above it are 0700), or the error's name
nobody_reads() {
    "$PY" -c 'import errno, os, sys
os.chdir(sys.argv[1]); os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
try: print(open(sys.argv[2]).read(), end="")
except OSError as e: print(errno.errorcode[e.errno])' "$@"
}
# xattr_err PATH NAME: the value in hex, or the error's name
xattr_err() {
    "$PY" -c 'import errno, os, sys
try: print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())
except OSError as e: print(errno.errorcode[e.errno])' "$@"
}
mount_image "$T/data" "$REGISTRY/stress:gzip" "$M"
for root in "$R" "$M"; do
    assert_eq "readable by 65534 through the ACL" "$(nobody_reads "$root/acl" granted)" \
        "$root: a 0640 file whose ACL grants 65534"
    assert_eq "EACCES" "$(nobody_reads "$root/acl" plain)" "$root: a 0640 file without an ACL"
done
assert_eq "$(xattr_err "$R/acl/dir" system.posix_acl_default)" \
    "$(xattr_err "$M/acl/dir" system.posix_acl_default)" "a default ACL"
assert_eq "ENODATA" "$(xattr_err "$M/acl/plain" system.posix_acl_access)" \
    "no ACL on a file of an image with ACLs"
assert_eq "ENOTSUP" "$(xattr_err "$M/acl/plain" security.selinux)" "an image without labels"
assert_eq "ENODATA" "$(xattr_err "$M/acl/plain" user.none)" "a user xattr the file lacks"
"$AFSP_BIN" --data "$T/data" umount "$M"
mount_image "$T/data" "$REGISTRY/bb:1" "$M"
assert_eq "ENOTSUP" "$(xattr_err "$M/bin/busybox" system.posix_acl_access)" \
    "an image without ACLs"
assert_eq "ENOTSUP" "$(xattr_err "$M/bin" system.posix_acl_default)" "an image without ACLs"
ls -lR "$M" >/dev/null || fail "ls -lR of an image without ACLs or labels"
"$AFSP_BIN" --data "$T/data" umount "$M"

log "programs from the mount: busybox through chroot, as on the unpacked tree"
umoci_unpack_ref "$REGISTRY/bb:1" "$T/bb-oracle"
mount_image "$T/data" "$REGISTRY/bb:1" "$M"
script='set -e; ls -la / /bin | sort; cat /etc/passwd; echo "$(find / -xdev | wc -l) entries";
sha256sum /bin/busybox; stat -c "%n %a %u %g %s %b" /bin/sh /etc/passwd; readlink /bin/ls;
echo done'
exp=$(chroot "$T/bb-oracle" /bin/sh -c "$script" 2>&1) || fail "script fails on the oracle: $exp"
got=$(chroot "$M" /bin/sh -c "$script" 2>&1) || fail "script fails on the mount: $got"
assert_eq "$exp" "$got" "busybox script output"
out=$(chroot "$M" /bin/sh -c 'echo x > /new' 2>&1) && fail "wrote into the mounted root"
assert_contains "$out" "Read-only file system"
"$AFSP_BIN" --data "$T/data" umount "$M"

# reader.py ROOT ORACLE THREADS [--eio-ok]: reads every regular file under ROOT from THREADS
# threads, each file from a random mix of offsets and sizes after dropping its cached pages, and
# compares with ORACLE; with --eio-ok a file may fail with EIO instead (and the count is printed).
cat >"$T/reader.py" <<'PYEOF'
import concurrent.futures, errno, hashlib, os, random, sys
root, oracle, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
eio_ok = "--eio-ok" in sys.argv
files = []
for d, _, names in os.walk(oracle):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p):
            files.append(os.path.relpath(p, oracle))
big = max(files, key=lambda f: os.path.getsize(os.path.join(oracle, f)))
work = files + [big] * 16  # many readers of one file, too
random.Random(7).shuffle(work)

def read(rel, seed):
    rng = random.Random(seed)
    want = open(os.path.join(oracle, rel), "rb").read()
    fd = os.open(os.path.join(root, rel), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        n = len(want)
        cuts = sorted(set([0, n] + [rng.randrange(n + 1) for _ in range(rng.randrange(1, 6))]))
        parts = list(zip(cuts, cuts[1:]))
        rng.shuffle(parts)
        got = bytearray(n)
        for a, b in parts:
            got[a:b] = os.pread(fd, b - a, a)
        if bytes(got) != want:
            return "WRONG " + rel
        return "ok"
    except OSError as e:
        if eio_ok and e.errno == errno.EIO:
            return "eio"
        return "ERROR %s: %s" % (rel, e)
    finally:
        os.close(fd)

with concurrent.futures.ThreadPoolExecutor(threads) as ex:
    res = list(ex.map(read, work, range(len(work))))
bad = [r for r in res if r not in ("ok", "eio")]
print("files %d reads %d eio %d big %s" % (len(files), len(res), res.count("eio"), big))
for r in bad[:20]:
    print(r)
sys.exit(1 if bad else 0)
PYEOF

log "concurrent readers, a 1 MiB piece cache (the image is ~20 MB of files)"
mount_image "$T/data" "$REGISTRY/stress:gzip" "$M" --cache-mem 1M
out=$("$PY" "$T/reader.py" "$M" "$R" 16) || fail "concurrent reads: $out"
log "$out"
"$PY" "$T/reader.py" "$M" "$R" 4 >/dev/null || fail "second round"
"$AFSP_BIN" --data "$T/data" umount "$M"
st=$(grep "unmounted $(realpath "$M")" "$(mount_log "$T/data" "$M")" | tail -1)
assert_contains "$st" " 0 errors" "no read failed"
assert_not_contains "$st" " 0 evicted" "the small cache really evicted"

log "a corrupted chunk in the store: EIO for what needs it, the right bytes for the rest"
D2=$T/data-corrupt
"$AFSP_BIN" --data "$D2" pull "$REGISTRY/stress:gzip" >/dev/null
blob=$(ls -S "$D2"/blobs/sha256/* | sed -n 1p) # the layer with the 6 MiB file
size=$(stat -c %s "$blob")
"$PY" - "$blob" $((size / 2)) <<'PYEOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x55]))
PYEOF
mount_image "$D2" "$REGISTRY/stress:gzip" "$M"
out=$("$PY" "$T/reader.py" "$M" "$R" 8 --eio-ok) || fail "reads of a corrupted layer: $out"
log "$out"
assert_not_contains "$out" " eio 0 " "some file needs the bad chunk"
assert_contains "$(cat "$(mount_log "$D2" "$M")")" "does not match its hash in the index"
"$AFSP_BIN" --data "$D2" umount "$M"

log "--prefetch: the listed files are decoded before anyone reads them"
(cd "$R" && find many -type f | sort | sed -n 1,300p) >"$T/prefetch.txt"
mount_image "$T/data" "$REGISTRY/stress:gzip" "$M" --prefetch "$T/prefetch.txt"
L=$(mount_log "$T/data" "$M")
wait_until 30 grep -q "prefetch: 300 files" "$L"
(cd "$M" && xargs cat <"$T/prefetch.txt") | cmp - <(cd "$R" && xargs cat <"$T/prefetch.txt") ||
    fail "prefetched files read wrong"
"$AFSP_BIN" --data "$T/data" umount "$M"
st=$(grep "unmounted $(realpath "$M")" "$L" | tail -1)
assert_contains "$st" " 0 missed" "every piece read was prefetched"
assert_not_contains "$st" " 0 pieces prefetched"

log "--preload: every chunk fetched and verified in the background"
mount_image "$T/data" "$REGISTRY/stress:gzip" "$M" --preload
wait_until 30 grep -q "preload: done" "$(mount_log "$T/data" "$M")"
assert_not_contains "$(cat "$(mount_log "$T/data" "$M")")" "preload: layer"
"$AFSP_BIN" --data "$T/data" umount "$M"
mount_image "$D2" "$REGISTRY/stress:gzip" "$M" --preload
wait_until 30 grep -q "preload: done" "$(mount_log "$D2" "$M")"
assert_contains "$(cat "$(mount_log "$D2" "$M")")" "preload: layer"
"$AFSP_BIN" --data "$D2" umount "$M"
