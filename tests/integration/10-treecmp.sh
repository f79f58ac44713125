# treecmp.py, the oracle comparison of two trees, must pass identical trees and catch each kind
# of difference, reporting only that one.
. "$(dirname "$0")/lib.sh"

T=$TEST_TMPDIR
A=$T/a
mkdir -p "$A/dir/sub" "$A/empty-dir"
printf 'hello\n' >"$A/file"
printf 'x%.0s' $(seq 1 5000) >"$A/dir/bigger"
: >"$A/dir/empty"
ln "$A/file" "$A/dir/hardlink"
printf 'twin\n' >"$A/twin1"
printf 'twin\n' >"$A/twin2"
touch -r "$A/twin1" "$A/twin2"
ln -s file "$A/link"
ln -s /nowhere "$A/dangling"
mknod "$A/chr" c 1 3
mkfifo "$A/fifo"
printf 'suid\n' >"$A/suid"
chmod 4755 "$A/suid"
chown 1234:5678 "$A/dir/bigger"
"$PY" - "$A" <<'EOF'
import os, sys
a = sys.argv[1]
os.setxattr(a + "/file", "user.k", b"v")
os.setxattr(a + "/dir", "user.bin", b"\x00\xff")
os.setxattr(a + "/link", "trusted.l", b"on a symlink", follow_symlinks=False)
for p, ns in (("file", 1614834367123456789), ("dir/sub", 1000000000000000001),
              ("link", 1500000000500000000)):
    os.utime(a + "/" + p, ns=(ns, ns), follow_symlinks=False)
EOF

treecmp() { "$PY" "$LIB_DIR/treecmp.py" "$@"; }

# B := a fresh copy of A (hardlinks, xattrs, owners, nanosecond mtimes preserved)
fresh_b() {
    rm -rf "$T/b"
    cp -a "$A" "$T/b"
}

# after a mutation, put B's directory mtimes back to A's so only the mutation itself differs
sync_dir_mtimes() {
    "$PY" - "$A" "$T/b" <<'EOF'
import os, sys
a, b = sys.argv[1:]
for root, dirs, _ in os.walk(a):
    for d in [""] + dirs:
        pa = os.path.join(root, d) if d else root
        pb = os.path.join(b, os.path.relpath(pa, a))
        if os.path.isdir(pb) and not os.path.islink(pb):
            st = os.lstat(pa)
            os.utime(pb, ns=(st.st_atime_ns, st.st_mtime_ns))
EOF
}

# expect_diff NAME EXPECTED_TEXT MUTATION...: mutate a fresh B, treecmp must exit 1 with
# exactly one difference line containing EXPECTED_TEXT (or N lines with --lines N). Directory
# mtimes are reset to A's after the mutation, unless --nosync.
expect_diff() {
    local name=$1 want=$2 lines=1 sync=1 out rc
    shift 2
    while :; do
        case $1 in
        --lines) lines=$2; shift 2 ;;
        --nosync) sync=0; shift ;;
        *) break ;;
        esac
    done
    fresh_b
    (cd "$T/b" && eval "$*")
    ((sync == 0)) || sync_dir_mtimes
    rc=0
    out=$(treecmp "$A" "$T/b") || rc=$?
    log "$name: $(printf '%s' "$out" | head -1)"
    assert_eq 1 "$rc" "treecmp exit status for mutation '$name' (output: $out)"
    assert_contains "$out" "$want" "mutation '$name'"
    assert_eq "$lines" "$(printf '%s\n' "$out" | grep -vc '^treecmp:')" \
        "number of differences for mutation '$name' (output: $out)"
}

log "identical trees"
fresh_b
out=$(treecmp "$A" "$T/b") || fail "identical trees reported different: $out"
assert_contains "$out" "identical"
out=$(treecmp "$A" "$A") || fail "a tree differs from itself: $out"

expect_diff content "content differs: twin1" "printf 'Twin\n' >twin1 && touch -r '$A/twin1' twin1"
# a hardlinked file's change shows under each of its names
expect_diff content-hardlinked "content differs: dir/hardlink" --lines 2 \
    "printf 'hellO\n' >file && touch -r '$A/file' file"
expect_diff size "size differs: dir/bigger" "printf 'more' >>dir/bigger && touch -r '$A/dir/bigger' dir/bigger"
expect_diff mode "mode differs: suid: A=4755 B=0755" "chmod 0755 suid"
expect_diff sticky "mode differs: dir/sub: A=0755 B=1755" "chmod 1755 dir/sub"
expect_diff owner "owner differs: dir/bigger: A=1234:5678 B=0:5678" "chown 0 dir/bigger"
expect_diff link-owner "owner differs: link" "chown -h 7:7 link"
expect_diff mtime-ns "mtime differs: file: A=1614834367.123456789 B=1614834367.123456788" \
    --lines 2 "touch -d '@1614834367.123456788' file"
expect_diff dir-mtime "mtime differs: dir/sub: A=1000000000.000000001 B=1000000000.000000002" \
    --nosync "touch -d '@1000000000.000000002' dir/sub"
expect_diff link-mtime "mtime differs: link" "touch -h -d '@1500000000' link"
expect_diff symlink-target "symlink target differs: dangling: A=/nowhere B=/elsewhere" \
    "ln -sfn /elsewhere dangling && touch -h -r '$A/dangling' dangling"
expect_diff xattr-value "xattr differs: file: user.k: A='v' B='w'" --lines 2 \
    "$PY -c 'import os; os.setxattr(\"file\", \"user.k\", b\"w\")'"
expect_diff xattr-removed "xattr only in A: dir: user.bin=0x00ff" \
    "$PY -c 'import os; os.removexattr(\"dir\", \"user.bin\")'"
expect_diff xattr-added "xattr only in B: twin1: user.new='1'" \
    "$PY -c 'import os; os.setxattr(\"twin1\", \"user.new\", b\"1\")'"
expect_diff xattr-on-symlink "xattr differs: link: trusted.l" \
    "$PY -c 'import os; os.setxattr(\"link\", \"trusted.l\", b\"changed\", follow_symlinks=False)'"
# the split copy keeps every attribute: only the link structure differs (reported per name)
expect_diff hardlink-split "hardlinks differ: dir/hardlink: A links {dir/hardlink, file}" --lines 2 \
    "rm dir/hardlink && cp -a file dir/hardlink"
expect_diff hardlink-join "hardlinks differ: twin1: A links {twin1} B links {twin1, twin2}" --lines 2 \
    "rm twin2 && ln twin1 twin2"
expect_diff missing "only in A: dir/empty (file)" "rm dir/empty"
expect_diff extra "only in B: empty-dir/new (file)" "touch empty-dir/new"
expect_diff type "type differs: fifo: A=fifo B=file" "rm fifo && touch -r '$A/fifo' fifo"
expect_diff device "device differs: chr: A=1,3 B=1,5" "rm chr && mknod chr c 1 5 && touch -r '$A/chr' chr"

log "--ignore and --exclude"
fresh_b
chmod 0700 "$T/b/suid"
touch -d @1 "$T/b/dir/sub"
out=$(treecmp --ignore mode --ignore dirmtime "$A" "$T/b") || fail "--ignore did not ignore: $out"
out=$(treecmp --exclude suid --exclude 'dir/s*' "$A" "$T/b") || fail "--exclude did not exclude: $out"
rc=0
treecmp "$A" /nonexistent >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "treecmp exit status for a missing tree"
log "treecmp ok"
