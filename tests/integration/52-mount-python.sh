#!/bin/bash
# A real distribution from the mount: Debian 12 minbase + python3 (debootstrap, made once per
# machine and kept in $AFSP_TEST_CACHE, default /var/cache/afsp-test), pushed to a registry,
# mounted; the whole tree equals `umoci unpack` of it, and python3 run through chroot from the
# mount imports modules, hashes its own standard library and prints what it prints on the
# unpacked tree.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-mount.sh"

T=$TEST_TMPDIR
M=$T/mnt
python_image_layout "$T/oci"
start_registry
push_image "$T/oci" py "$REGISTRY/debian:py"
umoci_unpack_ref "$REGISTRY/debian:py" "$T/oracle"

mount_image "$T/data" "$REGISTRY/debian:py" "$M"
assert_tree_eq "$T/oracle" "$M"

script='
import hashlib, json, os, sqlite3, sys
h = hashlib.sha256()
n = 0
for d, dirs, files in os.walk("/usr/lib/python3.11"):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p):
            h.update(p.encode() + open(p, "rb").read())
            n += 1
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.executemany("insert into t values (?)", [(i,) for i in range(1000)])
print(json.dumps({"files": n, "sha256": h.hexdigest(), "sum": db.execute("select sum(x) from t").fetchone()[0], "version": sys.version.split()[0]}))
'
exp=$(chroot "$T/oracle" /usr/bin/python3 -c "$script" 2>&1) || fail "python3 on the oracle: $exp"
got=$(chroot "$M" /usr/bin/python3 -c "$script" 2>&1) || fail "python3 on the mount: $got"
assert_eq "$exp" "$got" "python3 output"
log "python3 from the mount: $got"
out=$(chroot "$M" /usr/bin/python3 -c 'open("/tmp/x", "w")' 2>&1) && fail "python3 wrote to the mount"
assert_contains "$out" "Read-only file system"
"$AFSP_BIN" --data "$T/data" umount "$M"
