#!/bin/bash
# The stress image (build_stress_image: five hand-made layers covering every OCI layer-merging
# rule). First the fixture proves it holds what it claims: the layer tars are the same on every
# build, and `umoci unpack` (the oracle) shows each rule's outcome. Then afsp pulls it gzip, zstd
# and uncompressed, each into a fresh --data dir, and `afsp inspect extract` must equal the
# oracle in every attribute (except the mtimes of implicitly created directories, which umoci
# sets to the time of the unpack).
. "$(dirname "$0")/lib.sh"

T=$TEST_TMPDIR
umask 022 # umoci and afsp both create implicit parent directories 0777 & ~umask
export LC_COLLATE=C # ls order in the checks below
start_registry
build_stress_image "$T/oci" stress

log "the layer tars are deterministic"
layers_of() { # LAYOUT TAG: the image's layer digests (gzip, as umoci wrote them), then diff_ids
    "$PY" - "$1" "$2" <<'EOF'
import json, os, sys
lay, tag = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(lay, "blobs", *d.split(":"))
idx = json.load(open(os.path.join(lay, "index.json")))
m = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == tag][0]
man = json.load(open(blob(m["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
print(" ".join(l["digest"] for l in man["layers"]))
print(" ".join(cfg["rootfs"]["diff_ids"]))
EOF
}
build_stress_image "$T/oci2" stress
assert_eq "$(layers_of "$T/oci" stress)" "$(layers_of "$T/oci2" stress)" "layers of two builds"
assert_eq 10 "$(layers_of "$T/oci" stress | wc -w)" "stress image layers"
rm -rf "$T/oci2"

for c in gzip zstd none; do
    push_image "$T/oci" stress "$REGISTRY/stress:$c" --compress "$c"
done

log "the oracle: umoci unpack, and the rules it shows"
umoci_unpack_ref "$REGISTRY/stress:gzip" "$T/oracle"
R=$T/oracle
st() { stat -c "$1" "$R/$2"; }
xattr() { # PATH NAME: the value in hex, or "none"
    "$PY" -c 'import os,sys
try: print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).hex())
except OSError: print("none")' "$R/$1" "$2"
}
xattr_names() { "$PY" -c 'import os,sys; print(" ".join(sorted(os.listxattr(sys.argv[1], follow_symlinks=False))))' "$R/$1"; }
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
same_inode() { # P1 P2...
    local i0 p
    i0=$(st %i "$1")
    for p in "${@:2}"; do assert_eq "$i0" "$(st %i "$p")" "$1 and $p are one inode"; done
}

# the root: the last layer's "./" entry
assert_eq "755 0:0 1500000000.555555557" "$(st '%a %u:%g %.9Y' .)" "root"
# type changes
assert_eq "regular file 600" "$(st '%F %a' types/f2d2f)" "file -> dir -> file"
assert_eq "a file again in layer 3" "$(cat "$R/types/f2d2f")"
assert_eq "back" "$(ls -A "$R/types/d2l")" "dir -> symlink -> dir: only the new entry"
assert_eq "../wh/keep" "$(readlink "$R/types/d2l-stays")" "dir with a subtree -> symlink"
[ -d "$R/types/l2d" ] && [ ! -L "$R/types/l2d" ] || fail "symlink -> dir"
assert_eq "700 1500000000.777777777" "$(st '%a %.9Y' types/l2d)" \
    "types/l2d: its mtime survives layer 5's whiteout of its only entry"
assert_eq "" "$(ls -A "$R/types/l2d")" "types/l2d/inside whited out"
assert_eq "../wh/keep" "$(readlink "$R/types/f2l")" "file -> symlink"
assert_eq "regular file" "$(st %F types/fifo2file)" "fifo -> file"
# whiteouts
assert_eq "file1 keep recreate" "$(ls "$R/wh" | tr '\n' ' ' | sed 's/ $//')" "wh/ after the whiteouts"
assert_eq "directory" "$(st %F wh/file1)" "a whited-out file re-created as a dir"
assert_eq "new1" "$(ls -A "$R/wh/recreate")" "a whited-out dir re-created: no old entries"
assert_eq "755 0:0 1500000000.555555555" "$(st '%a %u:%g %.9Y' wh/recreate)" "re-created dir metadata"
assert_eq "none" "$(xattr wh/recreate user.old)" "re-created dir: the old xattr is gone"
for p in never-existed-at-root ghostdir wh/never-existed wh/tree; do
    [ ! -e "$R/$p" ] || fail "$p should not exist"
done
# opaque directories
assert_eq "l2after l2first l3more sub" "$(ls -A "$R/opq" | tr '\n' ' ' | sed 's/ $//')" \
    "opq/: lower entries hidden, layer 2's (before and after the marker) and 3's kept"
assert_eq "l2c l3d" "$(ls -A "$R/opq/sub" | tr '\n' ' ' | sed 's/ $//')" "opq/sub/"
assert_eq "750 1500000000.222222222" "$(st '%a %.9Y' opq)" "opq/ metadata (layer 2)"
assert_eq "opaque over nothing" "$(cat "$R/opqnew/file")"
# a dir entry over a dir: contents stay, metadata and the whole xattr set from the newer one
assert_eq "710 100000:100001 1500000000.333333333" "$(st '%a %u:%g %.9Y' meta)" "meta/ metadata"
assert_eq "child new-in-3 sub" "$(ls "$R/meta" | tr '\n' ' ' | sed 's/ $//')" "meta/ contents"
assert_eq "user.both user.l2" "$(xattr_names meta)" "meta/ xattrs: layer 2's set only"
assert_eq "$(hex "layer 2 value")" "$(xattr meta user.both)"
# many files
assert_eq 2999 "$(ls "$R/many" | wc -l)" "many/ (f2999 whited out in layer 5)"
assert_eq "changed in layer 3" "$(cat "$R/many/f0042")"
assert_eq 1010 "$(ls "$R/bulk" | wc -l)" "bulk/: 2000 - 1000 whited out + 10 re-created"
# UTF-8 names
assert_eq "résumé" "$(cat "$R/utf8/données/résumé.txt")"
assert_eq "ファイル" "$(cat "$R/utf8/日本語/ファイル")"
assert_eq "ファイル" "$(ls "$R/utf8/日本語")" "utf8/日本語/消す whited out"
assert_eq "whale rocket" "$(cat "$R/utf8/🐳🚀.txt")"
assert_eq "résumé" "$(cat "$R/utf8/📁/über")" "a symlink in an emoji dir"
# long paths
deep=$(find "$R/long" -name file-at-depth)
assert_eq "deep file" "$(cat "$deep")"
n=$(($(printf '%s' "${deep#"$R"/}" | wc -c)))
((n == 676)) || fail "the long path is $n bytes, not 676"
assert_eq "deep file" "$(cat "$R/long/symlink-to-deep")" "symlink to the deep file"
assert_eq "$(stat -c %i "$deep")" "$(st %i long/hardlink-to-deep)" "hardlink to the deep file"
assert_eq 1 "$(ls "$R/long/$(printf 'p%.0s' {1..200})" | wc -l)" "the 150-char name whited out"
# hardlinks
same_inode hl/trio/a hl/trio/b hl/trio/sub/c
assert_eq "3 640 1234:5678" "$(st '%h %a %u:%g' hl/trio/a)" "trio"
[ ! -e "$R/hl/base" ] || fail "hl/base was whited out in layer 3"
same_inode hl/cross hl/cross2
assert_eq "linked to from layer 2" "$(cat "$R/hl/cross2")" "cross-layer link keeps the data of a whited-out target"
same_inode hl/repl/x hl/repl/z
same_inode hl/repl/y hl/to-replaced
assert_eq "old content of x, y and z" "$(cat "$R/hl/repl/z")" "links of a replaced name keep the old data"
assert_eq "new content of y only" "$(cat "$R/hl/to-replaced")" "a link to a replaced name gets the new file"
assert_eq "2 2" "$(st %h hl/repl/x) $(st %h hl/repl/y)" "link counts after the replacement"
assert_eq "2 a b" "$(st %h hl/quad/a) $(ls "$R/hl/quad" | tr '\n' ' ' | sed 's/ $//')" \
    "a group half whited out"
# per-layer contents
assert_eq "version 5: the last" "$(cat "$R/content/evolve")"
assert_eq "0 0 data in layer 2" "$(st %s content/empty) $(st %s content/data-then-empty) $(cat "$R/content/empty-then-data")"
assert_eq $((6 * 1024 * 1024 + 4321)) "$(st %s bigdata/text)" "the big text file"
l2size=$(manifest_raw "$REGISTRY/stress:gzip" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["layers"][1]["size"])')
((l2size > 1000000 && l2size < 4000000)) || fail "layer 2 gzip is $l2size bytes: not 'compressible, not trivial'"
# modes, owners, devices, xattrs
assert_eq "4755 2711 1644 7777 0" "$(for f in setuid setgid sticky-file all none; do st %a "modes/$f"; done | tr '\n' ' ' | sed 's/ $//')" "modes"
assert_eq "1777 2775" "$(st %a modes/sticky-dir) $(st %a modes/setgid-dir)" "dir modes"
assert_eq "4000000000:4000000001" "$(st %u:%g owners/u4000000000)" "uid beyond 2^31"
assert_eq "6755 70000:70001" "$(st '%a %u:%g' owners/suid-70000)" "setuid with an odd owner"
assert_eq "70000:70001" "$(st %u:%g owners/link)" "symlink owner"
assert_eq "character special file 1:3" "$(st '%F %t:%T' dev/null)" "char device"
assert_eq "block special file 8:0 0:6" "$(st '%F %t:%T %u:%g' dev/sda)" "block device"
assert_eq "fff:fffff" "$(st %t:%T dev/bigdev)" "device 4095,1048575"
assert_eq "fifo 620" "$(st '%F %a' dev/fifo)" "fifo"
assert_eq "01000002ffffffff00000000ff01000000000000" "$(xattr xattr/file security.capability)" "capability"
assert_eq "00fffe0180" "$(xattr xattr/file user.bin)" "binary xattr"
assert_eq "user.dir" "$(xattr_names xattr/dir)" "dir xattrs: layer 3's set"
assert_eq "$(hex "changed in layer 3")" "$(xattr xattr/dir user.dir)" "dir xattr changed"
assert_eq "user.v 33" "$(xattr_names xattr/changes) $(xattr xattr/changes user.v)" "file xattrs: layer 3's set"
assert_eq "0200000001000600ffffffff02000400feff000004000400ffffffff10000400ffffffff20000000ffffffff" \
    "$(xattr acl/granted system.posix_acl_access)" "an access ACL"
assert_eq "none" "$(xattr acl/plain system.posix_acl_access)" "no ACL"
assert_eq "system.posix_acl_default" "$(xattr_names acl/dir)" "a default ACL"
# implicit parents: umoci makes them 0755 root:root (mode from the umask), mtime = unpack time
assert_eq "751 1500000000.444444444" "$(st '%a %.9Y' implicit)" "implicit/ named in layer 2"
for d in implicit/a implicit/a/b late late/implicit; do
    assert_eq "directory 755 0:0" "$(st '%F %a %u:%g' "$d")" "implicit dir $d"
done
now=$(date +%s)
(($(st %Y implicit/a) > now - 600)) || fail "umoci no longer gives implicit dirs the unpack time: drop the exclusion below"
"$PY" "$LIB_DIR/treecmp.py" -q "$R" "$R" >/dev/null || fail "treecmp on the oracle itself"

# afsp: the merged view must be umoci's. Two comparisons cover every attribute but the mtimes
# of the four implicit directories: all but directory mtimes everywhere, then everything
# outside the implicit subtrees. Every compression is compared before failing, so that one run
# lists every difference.
bad=()
for c in gzip zstd none; do
    D=$T/data-$c
    out=$("$AFSP_BIN" --data "$D" pull "$REGISTRY/stress:$c")
    assert_contains "$out" "$REGISTRY/stress:$c sha256:"
    "$AFSP_BIN" --data "$D" inspect extract "$REGISTRY/stress:$c" "$T/ex-$c"
    log "$c: afsp inspect extract vs umoci unpack"
    "$PY" "$LIB_DIR/treecmp.py" --ignore dirmtime "$R" "$T/ex-$c" || bad+=("$c")
    "$PY" "$LIB_DIR/treecmp.py" --exclude implicit/a --exclude late "$R" "$T/ex-$c" ||
        bad+=("$c(mtimes)")
    rm -rf "$T/ex-$c" "$D"
done
((${#bad[@]} == 0)) || fail "afsp inspect extract differs from umoci unpack (A) for: ${bad[*]}"
log "afsp inspect extract matches umoci unpack in every compression"
