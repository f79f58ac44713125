#!/usr/bin/python3
"""Compares two directory trees the way a user of an image relies on them.

    treecmp.py [options] A B

Compared, for every path under A and B (never following symlinks): presence, file type,
contents (size + sha256), permission bits incl. setuid/setgid/sticky, uid/gid, mtime in
nanoseconds, symlink target, device major/minor, every extended attribute (name and value), and
hardlink structure (the set of paths sharing an inode must be the same in A and B). atime and
ctime are never compared. Exit 0 when the trees match, 1 with a readable listing of every
difference (to stdout) when they don't, 2 on a usage error.

Options:
  --ignore WHAT     skip one kind of check, repeatable: content, mode, owner, mtime, dirmtime
                    (mtime of directories only), linkmtime (mtime of symlinks only), xattr,
                    hardlinks, rdev, root (the top directory's own attributes)
  --ignore-xattr P  skip xattrs whose name starts with P, repeatable (e.g. security.selinux)
  --exclude GLOB    skip paths (relative, like "a/b") matching the fnmatch GLOB and their
                    subtrees, repeatable
  --unprivileged    B is A as shown from layers whose index is a peer's (docs/security.md): A's
                    device nodes are not in B, setuid/setgid bits are clear in B, and
                    security.capability is not in B; all else as A
  --max N           list at most N differences (default 200); the count is always exact
  -q                print only the summary line
"""
import argparse
import fnmatch
import hashlib
import os
import stat
import sys

KINDS = ("content", "mode", "owner", "mtime", "dirmtime", "linkmtime", "xattr", "hardlinks",
         "rdev", "root")


def ftype(m):
    if stat.S_ISREG(m):
        return "file"
    if stat.S_ISDIR(m):
        return "dir"
    if stat.S_ISLNK(m):
        return "symlink"
    if stat.S_ISCHR(m):
        return "chardev"
    if stat.S_ISBLK(m):
        return "blockdev"
    if stat.S_ISFIFO(m):
        return "fifo"
    if stat.S_ISSOCK(m):
        return "socket"
    return "unknown(%o)" % stat.S_IFMT(m)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def xattrs(path, ignore_prefixes):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return {"<listxattr error>": str(e).encode()}
    for n in names:
        if any(n.startswith(p) for p in ignore_prefixes):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = ("<getxattr error: %s>" % e).encode()
    return out


def walk(root, excludes):
    """{relpath: os.stat_result} for root ('.') and everything below it."""
    entries = {".": os.lstat(root)}
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            for e in it:
                r = os.path.join(rel, e.name) if rel else e.name
                if any(fnmatch.fnmatchcase(r, g) for g in excludes):
                    continue
                st = e.stat(follow_symlinks=False)
                entries[r] = st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(r)
    return entries


def show(p):
    # paths may hold any bytes: show them unambiguously but readably
    return ascii(p)[1:-1] if not p.isprintable() else p


def fmt_xattr(v):
    try:
        s = v.decode()
        if s.isprintable():
            return repr(s)
    except UnicodeDecodeError:
        pass
    return "0x" + v.hex()


def hardlink_groups(entries):
    """{relpath: frozenset of relpaths sharing its inode}, non-directories only."""
    by_ino = {}
    for p, st in entries.items():
        if not stat.S_ISDIR(st.st_mode):
            by_ino.setdefault((st.st_dev, st.st_ino), set()).add(p)
    out = {}
    for group in by_ino.values():
        g = frozenset(group)
        for p in group:
            out[p] = g
    return out


def compare(a, b, ignore, ignore_xattr, excludes, unpriv=False):
    diffs = []
    ea, eb = walk(a, excludes), walk(b, excludes)
    if unpriv:  # A's devices must be absent from B: they are not compared further
        for p in [p for p, st in ea.items() if ftype(st.st_mode) in ("chardev", "blockdev")]:
            if p in eb:
                diffs.append("a device shown from a peer's index: %s" % show(p))
            del ea[p]
            eb.pop(p, None)
    for p in sorted(set(ea) - set(eb)):
        diffs.append("only in A: %s (%s)" % (show(p), ftype(ea[p].st_mode)))
    for p in sorted(set(eb) - set(ea)):
        diffs.append("only in B: %s (%s)" % (show(p), ftype(eb[p].st_mode)))
    for p in sorted(set(ea) & set(eb)):
        if p == "." and "root" in ignore:
            continue
        sa, sb = ea[p], eb[p]
        pa, pb = os.path.join(a, p), os.path.join(b, p)
        ta, tb = ftype(sa.st_mode), ftype(sb.st_mode)
        name = show(p)
        if ta != tb:
            diffs.append("type differs: %s: A=%s B=%s" % (name, ta, tb))
            continue
        ma = stat.S_IMODE(sa.st_mode) & (~0o6000 if unpriv else ~0)
        if "mode" not in ignore and ma != stat.S_IMODE(sb.st_mode) and ta != "symlink":
            diffs.append("mode differs: %s: A=%04o B=%04o" % (name, ma, stat.S_IMODE(sb.st_mode)))
        if "owner" not in ignore and (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs.append("owner differs: %s: A=%d:%d B=%d:%d" %
                         (name, sa.st_uid, sa.st_gid, sb.st_uid, sb.st_gid))
        skip_mtime = ("mtime" in ignore or (ta == "dir" and "dirmtime" in ignore) or
                      (ta == "symlink" and "linkmtime" in ignore))
        if not skip_mtime and sa.st_mtime_ns != sb.st_mtime_ns:
            diffs.append("mtime differs: %s: A=%d.%09d B=%d.%09d" %
                         (name, sa.st_mtime_ns // 10**9, sa.st_mtime_ns % 10**9,
                          sb.st_mtime_ns // 10**9, sb.st_mtime_ns % 10**9))
        if ta == "file" and "content" not in ignore:
            if sa.st_size != sb.st_size:
                diffs.append("size differs: %s: A=%d B=%d" % (name, sa.st_size, sb.st_size))
            else:
                try:
                    ha, hb = sha256(pa), sha256(pb)
                except OSError as e:
                    diffs.append("read error: %s: %s" % (name, e))
                else:
                    if ha != hb:
                        diffs.append("content differs: %s: A=sha256:%s B=sha256:%s" %
                                     (name, ha[:16], hb[:16]))
        if ta == "symlink":
            la, lb = os.readlink(pa), os.readlink(pb)
            if la != lb:
                diffs.append("symlink target differs: %s: A=%s B=%s" %
                             (name, show(la), show(lb)))
        if ta in ("chardev", "blockdev") and "rdev" not in ignore:
            da = (os.major(sa.st_rdev), os.minor(sa.st_rdev))
            db = (os.major(sb.st_rdev), os.minor(sb.st_rdev))
            if da != db:
                diffs.append("device differs: %s: A=%d,%d B=%d,%d" % ((name,) + da + db))
        if "xattr" not in ignore:
            xa, xb = xattrs(pa, ignore_xattr), xattrs(pb, ignore_xattr)
            if unpriv:
                xa.pop("security.capability", None)
            for k in sorted(set(xa) | set(xb)):
                if k not in xb:
                    diffs.append("xattr only in A: %s: %s=%s" % (name, k, fmt_xattr(xa[k])))
                elif k not in xa:
                    diffs.append("xattr only in B: %s: %s=%s" % (name, k, fmt_xattr(xb[k])))
                elif xa[k] != xb[k]:
                    diffs.append("xattr differs: %s: %s: A=%s B=%s" %
                                 (name, k, fmt_xattr(xa[k]), fmt_xattr(xb[k])))
    if "hardlinks" not in ignore:
        ga, gb = hardlink_groups(ea), hardlink_groups(eb)
        reported = set()
        for p in sorted(set(ga) & set(gb)):
            if ftype(ea[p].st_mode) != ftype(eb[p].st_mode):
                continue
            x, y = ga[p] & set(gb), gb[p] & set(ga)  # only paths present on both sides
            if x != y and (x, y) not in reported:
                reported.add((x, y))
                diffs.append("hardlinks differ: %s: A links {%s} B links {%s}" %
                             (show(p), ", ".join(sorted(map(show, x))),
                              ", ".join(sorted(map(show, y)))))
    return diffs, len(ea), len(eb)


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ignore", action="append", default=[], choices=KINDS)
    ap.add_argument("--ignore-xattr", action="append", default=[])
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--unprivileged", action="store_true")
    ap.add_argument("--max", type=int, default=200)
    ap.add_argument("-q", action="store_true")
    args = ap.parse_args()
    for d in (args.a, args.b):
        if not os.path.isdir(d):
            print("treecmp: not a directory: %s" % d, file=sys.stderr)
            return 2
    diffs, na, nb = compare(args.a, args.b, set(args.ignore), args.ignore_xattr, args.exclude,
                            args.unprivileged)
    if not args.q:
        for d in diffs[:args.max]:
            print(d)
        if len(diffs) > args.max:
            print("... and %d more differences" % (len(diffs) - args.max))
    if diffs:
        print("treecmp: %d differences between %s (%d entries) and %s (%d entries)" %
              (len(diffs), args.a, na, args.b, nb))
        return 1
    print("treecmp: identical: %s and %s (%d entries)" % (args.a, args.b, na))
    return 0


if __name__ == "__main__":
    sys.exit(main())
