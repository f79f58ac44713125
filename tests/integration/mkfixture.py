#!/usr/bin/python3
"""Contents of the fixture image (see build_fixture_image in lib.sh). Run as root.

    mkfixture.py populate ROOTFS [--files N] [--seed S]   layer 2: everything but whiteouts
    mkfixture.py modify ROOTFS                             layer 3: deletions and changes
    mkfixture.py extra-layer OUT.tar                       layer 4: a hand-made PAX tar with
                                                           an opaque directory, nanosecond
                                                           mtimes and a re-created whited-out file

Layers 2 and 3 are written into an unpacked umoci bundle and made into layers by
`umoci repack` (which rounds mtimes to whole seconds and never writes opaque whiteouts);
layer 4 is written by this script, since umoci cannot produce those, and added with
`umoci raw add-layer`. Everything is deterministic for a given seed except directory mtimes
of layers 2 and 3 (umoci records the time they were changed).
"""
import io
import os
import random
import shutil
import stat
import subprocess
import sys
import tarfile

# the capability set by `setcap cap_net_raw+ep` (VFS_CAP_REVISION_2, effective, permitted bit 13)
CAP_NET_RAW_EP = bytes.fromhex("0100000200200000000000000000000000000000")

LONG1 = "L" * 150  # a 150-character component (ext4 allows 255)
LONG2 = "M" * 100
LONG3 = "N" * 60


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def set_mtime(path, ns):
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def populate(root, nfiles, seed):
    rng = random.Random(seed)
    j = lambda *p: os.path.join(root, *p)

    # 1. many small files over nested dirs: data/dXX/dYY/fNNNN
    words = [b"alpha", b"beta", b"gamma", b"delta", b"layer", b"chunk", b"\n", b" "]
    for i in range(nfiles):
        d1, d2 = (i // 100) % 20, (i // 10) % 10
        r = rng.random()
        if r < 0.12:
            size = 0
        elif r < 0.65:
            size = rng.randint(1, 2000)
        elif r < 0.95:
            size = rng.randint(2001, 16384)
        else:
            size = rng.randint(16385, 131072)
        if rng.random() < 0.5:
            data = rng.randbytes(size)  # incompressible
        else:  # compressible text
            data = b"".join(rng.choice(words) for _ in range(size // 4 + 1))[:size]
        write(j("data", "d%02d" % d1, "d%02d" % d2, "f%04d" % i), data)
    write(j("data", "big.bin"), rng.randbytes(3 * 1024 * 1024 + 123))
    write(j("data", "zeros.bin"), bytes(1024 * 1024))
    write(j("data", "empty"), b"")

    # 2. awkward names
    for name in ["with space.txt", "ünïcödé-☃.txt", "-leading-dash", ".hidden", "a:colon",
                 "quote'\"", "back\\slash", "percent%20", "x" * 255]:
        write(j("names", name), name.encode() + b"\n")

    # 3. symlinks
    os.makedirs(j("links"))
    os.symlink("../data/d00/d00/f0002", j("links", "rel"))
    os.symlink("/data/d00/d00/f0003", j("links", "abs"))
    os.symlink("../does/not/exist", j("links", "dangling"))
    os.symlink("../data/d00", j("links", "dirlink"))
    os.symlink("self", j("links", "self"))
    os.symlink("../" + "t" * 200 + "/target", j("links", "longtarget"))
    os.symlink("../dev/null", j("links", "to-dev"))

    # 4. hardlinks
    write(j("hard", "a"), b"one inode, three names\n")
    os.link(j("hard", "a"), j("hard", "b"))
    os.makedirs(j("hard", "sub"))
    os.link(j("hard", "a"), j("hard", "sub", "c"))
    write(j("hard", "empty1"), b"")
    os.link(j("hard", "empty1"), j("hard", "empty2"))
    write(j("hard", "suid"), b"#!/bin/sh\necho suid\n", 0o755)
    os.chown(j("hard", "suid"), 1234, 5678)
    os.chmod(j("hard", "suid"), 0o4755)
    os.link(j("hard", "suid"), j("hard", "suid-link"))

    # 5. device nodes and a fifo
    os.makedirs(j("dev"))
    os.mknod(j("dev", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(j("dev", "loop0"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(j("dev", "bigminor"), 0o600 | stat.S_IFCHR, os.makedev(240, 70000))
    os.mkfifo(j("dev", "fifo"))
    os.chmod(j("dev", "fifo"), 0o644)
    os.chmod(j("dev", "null"), 0o666)
    os.chmod(j("dev", "loop0"), 0o660)

    # 6. long paths: > 100 and > 255 characters in all, one component of 150
    deep = j("long", LONG1, LONG2, LONG3)
    write(os.path.join(deep, "file-at-depth"), b"deep\n")
    os.link(os.path.join(deep, "file-at-depth"), os.path.join(deep, "hardlink-at-depth"))
    os.symlink("file-at-depth", os.path.join(deep, "symlink-at-depth"))
    write(j("long", "a" * 99), b"99\n")
    write(j("long", "b" * 100), b"100\n")
    write(j("long", "c" * 101), b"101\n")

    # 7. modes
    write(j("modes", "setuid"), b"suid\n", 0o4755)
    write(j("modes", "setgid"), b"sgid\n", 0o2755)
    write(j("modes", "sticky-file"), b"sticky\n", 0o1644)
    write(j("modes", "all-special"), b"ugt\n", 0o7777)
    write(j("modes", "private"), b"private\n", 0o600)
    write(j("modes", "none"), b"no permissions\n", 0o000)
    write(j("modes", "exec-only"), b"exec only\n", 0o111)
    os.makedirs(j("modes", "sticky-dir"))
    os.chmod(j("modes", "sticky-dir"), 0o1777)
    os.makedirs(j("modes", "setgid-dir"))
    write(j("modes", "setgid-dir", "inside"), b"in setgid dir\n")
    os.chmod(j("modes", "setgid-dir"), 0o2775)
    os.makedirs(j("modes", "dir-0700"))
    write(j("modes", "dir-0700", "inside"), b"in 0700 dir\n")
    os.chmod(j("modes", "dir-0700"), 0o700)
    os.makedirs(j("modes", "dir-0555"))
    write(j("modes", "dir-0555", "inside"), b"in 0555 dir\n")
    os.chmod(j("modes", "dir-0555"), 0o555)

    # 8. owners (chown clears setuid, so modes are set after)
    write(j("owners", "u1234"), b"owned by 1234:5678\n", 0o640)
    os.chown(j("owners", "u1234"), 1234, 5678)
    write(j("owners", "suid-1234"), b"suid, owned by 1234\n")
    os.chown(j("owners", "suid-1234"), 1234, 5678)
    os.chmod(j("owners", "suid-1234"), 0o6755)
    os.makedirs(j("owners", "dir-1000"))
    write(j("owners", "dir-1000", "inside"), b"x\n")
    os.chown(j("owners", "dir-1000"), 1000, 1000)
    os.symlink("u1234", j("owners", "link-42"))
    os.lchown(j("owners", "link-42"), 42, 43)
    write(j("owners", "big-ids"), b"ids beyond ustar's 7 octal digits\n")
    os.chown(j("owners", "big-ids"), 3000000, 3000001)
    write(j("owners", "nobody"), b"65534\n")
    os.chown(j("owners", "nobody"), 65534, 65534)

    # 9. xattrs (user.* and trusted.* as plain os.setxattr; the capability as setcap writes it)
    write(j("xattrs", "file"), b"has xattrs\n")
    os.setxattr(j("xattrs", "file"), "user.plain", b"hello")
    os.setxattr(j("xattrs", "file"), "user.binary", b"\x00\xff\x01\x02\x00")
    os.setxattr(j("xattrs", "file"), "user.long", bytes(rng.randrange(256) for _ in range(3000)))
    os.setxattr(j("xattrs", "file"), "trusted.afsp", b"trusted value")
    # umoci repack drops empty-valued xattrs (a PAX record with an empty value means "delete"),
    # so this one never reaches the image: it is here to show that
    write(j("xattrs", "empty-value"), b"xattr with an empty value\n")
    os.setxattr(j("xattrs", "empty-value"), "user.empty", b"")
    os.makedirs(j("xattrs", "dir"))
    os.setxattr(j("xattrs", "dir"), "user.on-dir", b"directory xattr")
    write(j("xattrs", "hardlinked"), b"xattr + hardlink\n")
    os.setxattr(j("xattrs", "hardlinked"), "user.shared", b"same inode")
    os.link(j("xattrs", "hardlinked"), j("xattrs", "hardlinked2"))
    os.symlink("file", j("xattrs", "symlink"))
    os.setxattr(j("xattrs", "symlink"), "trusted.on-link", b"symlink xattr",
                follow_symlinks=False)
    os.makedirs(j("caps"))
    with open("/bin/busybox", "rb") as f:
        write(j("caps", "ping"), f.read(), 0o755)
    try:
        subprocess.run(["setcap", "cap_net_raw+ep", j("caps", "ping")], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print("mkfixture: setcap failed (%s), writing security.capability directly" % e,
              file=sys.stderr)
        os.setxattr(j("caps", "ping"), "security.capability", CAP_NET_RAW_EP)

    # 10. things layers 3 and 4 change
    for n in ("a", "b"):
        write(j("opaque", n), b"lower " + n.encode() + b"\n")
    write(j("opaque", "sub", "c"), b"lower c\n")
    write(j("todelete", "x"), b"x\n")
    write(j("todelete", "sub", "y"), b"y\n")
    write(j("dir2file", "child"), b"child\n")
    write(j("file2dir"), b"a file, for now\n")
    write(j("tobemodified"), b"version 1\n")

    # 11. mtimes, set last (creating entries changes a directory's mtime)
    os.makedirs(j("times", "dir"))
    write(j("times", "dir", "f"), b"f\n")
    write(j("times", "nsec"), b"nanoseconds (umoci rounds them to seconds)\n")
    write(j("times", "y1980"), b"1980\n")
    write(j("times", "y2100"), b"2100\n")
    os.symlink("nsec", j("times", "link"))
    set_mtime(j("times", "nsec"), 981173106123456789)      # 2001-02-03 04:05:06.123456789
    set_mtime(j("times", "y1980"), 315532800 * 10**9)       # 1980-01-01
    set_mtime(j("times", "y2100"), 4102444800 * 10**9)      # 2100-01-01
    set_mtime(j("times", "link"), 1000000000 * 10**9)
    set_mtime(j("times", "dir"), 1234567890 * 10**9)
    set_mtime(j("times"), 1111111111 * 10**9)


def modify(root):
    j = lambda *p: os.path.join(root, *p)
    os.unlink(j("data", "d00", "d00", "f0000"))               # file whiteout
    shutil.rmtree(j("data", "d01"))                            # directory whiteout
    shutil.rmtree(j("todelete"))
    os.unlink(j("hard", "b"))                                  # one name of three
    with open(j("data", "d02", "d00", "f0200"), "ab") as f:     # content change
        f.write(b"appended in layer 3\n")
    os.chmod(j("data", "d02", "d00", "f0201"), 0o600)          # metadata-only changes
    os.chown(j("data", "d02", "d00", "f0202"), 4321, 8765)
    os.setxattr(j("data", "d02", "d00", "f0203"), "user.added", b"in layer 3")
    write(j("tobemodified"), b"version 2, longer than version 1\n")
    shutil.rmtree(j("dir2file"))                               # type changes
    write(j("dir2file"), b"was a directory\n")
    os.unlink(j("file2dir"))
    write(j("file2dir", "child"), b"was a file\n")
    os.unlink(j("links", "rel"))
    write(j("links", "rel"), b"was a symlink\n")
    write(j("data", "d00", "new-in-layer3"), b"new\n")


def tar_add(t, name, typ, mtime_ns=None, data=b"", mode=0o644, linkname="", xattrs=None):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.linkname = linkname
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    ti.mtime = (mtime_ns or 1700000000 * 10**9) // 10**9
    pax = {}
    if mtime_ns is not None and mtime_ns % 10**9:
        pax["mtime"] = "%d.%09d" % (mtime_ns // 10**9, mtime_ns % 10**9)
    for k, v in (xattrs or {}).items():
        pax["SCHILY.xattr." + k] = v
    ti.pax_headers = pax
    t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)


def extra_layer(out):
    D, F, L, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        # an opaque directory: lower a, b, sub/c vanish, only "new" remains
        tar_add(t, "opaque", D, mode=0o755)
        tar_add(t, "opaque/.wh..wh..opq", F, mode=0o644)
        tar_add(t, "opaque/new", F, data=b"upper new\n")
        # a file whited out in layer 3, created again
        tar_add(t, "data", D, mode=0o755)
        tar_add(t, "data/d00", D, mode=0o755)
        tar_add(t, "data/d00/d00", D, mode=0o755)
        tar_add(t, "data/d00/d00/f0000", F, data=b"re-created in layer 4\n")
        # nanosecond mtimes, which umoci repack cannot write
        tar_add(t, "nsec", D, 1600000000987654321, mode=0o755)
        tar_add(t, "nsec/file", F, 1614834367123456789, b"nanoseconds\n",
                xattrs={"user.layer4": "pax xattr"})
        tar_add(t, "nsec/link", L, 1234567890000000001, linkname="file")
        tar_add(t, "nsec/hardlink", H, 1614834367123456789, linkname="nsec/file")
        tar_add(t, "nsec/half", F, 1500000000500000000, b"half a second\n")
        # a whiteout of something that never existed
        tar_add(t, "nsec/.wh.ghost", F)


def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "populate":
        nfiles, seed = 2000, 1
        rest = a[2:]
        while rest:
            o = rest.pop(0)
            if o == "--files":
                nfiles = int(rest.pop(0))
                if nfiles < 300:
                    sys.exit("mkfixture: --files must be at least 300 (layer 3 changes d02)")
            elif o == "--seed":
                seed = int(rest.pop(0))
            else:
                sys.exit("mkfixture: unknown option " + o)
        populate(a[1], nfiles, seed)
    elif len(a) == 2 and a[0] == "modify":
        modify(a[1])
    elif len(a) == 2 and a[0] == "extra-layer":
        extra_layer(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
